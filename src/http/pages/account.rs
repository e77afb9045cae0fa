//! `GET /account`: the signed-in visitor's page. This is its shell (the heading, who is
//! signed in, sign-out); the account page's sections and actions are added beside it.
//! Anonymous visitors are sent to `/sign-in?ret-url=/account`.

use askama::Template;
use hyper::StatusCode;

use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::render::{self, Layout, Problem, html_page};
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::Response;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    email: String,
    name: Option<String>,
}

/// `GET /account`.
pub fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    let Some(identity) = page_identity(api, request)? else {
        return render::redirect("/sign-in?ret-url=/account");
    };
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let user = &identity.user;
    let name = [user.first_name.as_deref(), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let page = AccountPage {
        layout: Layout::new(api, "Your account"),
        problem: None,
        csrf_token: browser.form_token(&pages.csrf_key, Some(&identity)),
        email: user.email.clone(),
        name: (!name.is_empty()).then_some(name),
    };
    html_page(api, StatusCode::OK, &page, Some(&browser), &[])
}
