"""RQ queues, thin jobs and the periodic sweep."""
