//! `GET, POST /sign-in/second-factor`: the second step of a sign-in. No second factor
//! exists yet (the second-factor issue fills this page), so it says so and leads back to
//! sign-in.

use askama::Template;
use hyper::StatusCode;

use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::form::read_checked_form;
use crate::http::pages::render::{self, Layout, Problem, html_page};
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::Response;

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
}

/// `GET /sign-in/second-factor`.
pub fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request)?;
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let page = SecondFactorPage {
        layout: Layout::new(api, "Second step"),
        problem: None,
        csrf_token: browser.form_token(&pages.csrf_key, identity.as_ref()),
    };
    html_page(api, StatusCode::OK, &page, Some(&browser), &[])
}

/// `POST /sign-in/second-factor`: checked like every page form, then back to sign-in.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request)?;
    read_checked_form(api, pages, request, identity.as_ref()).await?;
    render::redirect("/sign-in")
}
