//! Support code for rprof's end-to-end tests (the `tests/` directory of this workspace).
