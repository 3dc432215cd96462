//! roomcast store.
