//! Fuzzes routing: any path through the router and the strict path-parameter parsing.
#![no_main]

use std::sync::OnceLock;

use latchkey::http::{Route, build_router, resolve_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Built once per fuzzing process, as the server builds its own once in `Api::new`.
    static ROUTER: OnceLock<matchit::Router<Route>> = OnceLock::new();
    let router = ROUTER.get_or_init(|| build_router().unwrap());
    let path = format!("/frontend/api/v1/{}", String::from_utf8_lossy(input));
    if let Some(Ok((route, parameters))) = resolve_path(router, &path) {
        let _ = (route.template(), route.methods(), parameters.user_id, parameters.token());
        assert!(Route::ALL.contains(&route));
    }
});
