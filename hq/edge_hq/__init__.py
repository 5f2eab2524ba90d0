"""HQ side: roster builder, record ingest, review and report. Never imported by a kiosk."""
