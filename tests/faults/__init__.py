"""The proving suite's faults: real processes on a private PostgreSQL and Redis, killed, crashed and restarted."""
