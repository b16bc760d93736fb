//! Holds the test of `examples/curl.sh` (in `tests/curl_sh.rs`): a walkthrough of the HTTP
//! API with curl, run against a `bus_testkit::TestServer`. The script is shell, not Rust,
//! so this crate has no code of its own; it exists so that the script's test is named after
//! it and runs with `cargo test -p bus-example-curl`, apart from the Rust examples.
