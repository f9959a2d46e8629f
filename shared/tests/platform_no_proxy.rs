//! The platform client never goes through a proxy, whatever the environment says. Alone in its
//! own test binary because it changes the process environment.

use wala::platform::http::{HttpClient, Request, RetryPolicy};

#[test]
fn platform_client_ignores_proxy_environment() {
    let fabric = wala_fabric::Fabric::start_builtin().expect("fabric starts");
    // Proxies pointing at a closed port: honouring them would make the request fail.
    for var in ["http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"] {
        std::env::set_var(var, "http://127.0.0.1:9");
    }
    let url = format!("http://{}/?comp=versions", fabric.wire_addr());
    let resp = HttpClient::platform().send(&Request::get(url), &RetryPolicy::wire().scaled_down(20));
    assert_eq!(resp.expect("direct request succeeds").status, 200);
    assert_eq!(fabric.requests().len(), 1);
}
