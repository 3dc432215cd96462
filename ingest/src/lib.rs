//! roomcast ingest.
