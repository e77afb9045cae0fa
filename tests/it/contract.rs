//! The served OpenAPI document and the routes stay in step: every route and method is
//! documented, every documented operation is routed, and each documented success answer
//! matches what the server sends.

use std::collections::BTreeSet;

use latchkey::http::Route;
use latchkey::http::pages::PageRoute;

use crate::support::TestServer;

#[tokio::test]
async fn the_served_document_lists_exactly_the_routes_and_their_methods() {
    let server = TestServer::start().await;
    let response = server.request("GET", "/openapi.json").send().await;
    assert_eq!(response.status, 200);
    let document = &response.json;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["jwt"]["bearerFormat"],
        "PASETO v4.public"
    );
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = Route::ALL
        .iter()
        .flat_map(|route| {
            route.methods().split(", ").map(move |method| {
                (
                    format!("/frontend/api/v1{}", route.template()),
                    method.to_owned(),
                )
            })
        })
        .chain(
            // The browser OAuth routes live under the API's prefix, served with the pages.
            PageRoute::ALL
                .iter()
                .filter(|page| page.path().starts_with("/frontend/api/v1/"))
                .flat_map(|page| {
                    page.methods()
                        .split(", ")
                        .filter(|method| *method != "HEAD")
                        .map(move |method| (page.path().to_owned(), method.to_owned()))
                }),
        )
        .collect();
    assert_eq!(documented, routed);

    // Every operation documents the error shape for each status a route can answer with it,
    // and every $ref resolves.
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            for status in [
                "400", "401", "403", "404", "405", "409", "413", "415", "429", "503",
            ] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    let text = response.text();
    for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            document["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
}
