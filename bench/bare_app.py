"""The baseline for bench/ingest.py: a bare Flask endpoint that parses the JSON body and answers 202 JSON."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify({"status": "ok"})


@app.post("/ingest")
def ingest():
    body = request.get_json()
    return jsonify({"message": "event ingested", "event_id": body.get("event_id"), "lead_id": body.get("lead_id")}), 202
