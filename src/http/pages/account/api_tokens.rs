//! `POST /account/api-tokens/create` and `/account/api-tokens/delete`: through
//! `auth::api_tokens::create_api_token` and `delete_api_token` as `POST /auth/api-token` and
//! `DELETE /auth/api-token/{token}` do (the permissions within the visitor's own, another
//! user's token not found). A new token is shown on the answer to its form, once: no page
//! shows it again.

use askama::Template;
use hyper::Method;
use hyper::StatusCode;

use crate::auth::api_tokens::{self, NewApiToken};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Notice, Section};
use crate::http::pages::account::{
    AccountForm, audit, check_route_access, finish, finish_on_page, read_account_form,
};
use crate::http::pages::render::{Layout, Problem, html_page};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::Permission;
use crate::rfc3339::format_rfc3339;

/// The answer to the create form: the whole token, this once.
#[derive(Template)]
#[template(path = "account_api_token.html")]
struct NewApiTokenPage {
    layout: Layout,
    problem: Option<Problem>,
    token: String,
    permissions: String,
    expires: Option<String>,
}

/// `POST /account/api-tokens/create`: `ttl` and `permissions` as the API reads them. No
/// permission ticked is a problem here (the API would read it as "all of mine").
pub async fn submit_create(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let ttl = fields.unsigned("ttl");
    let permissions = fields.permission_set("permissions");
    let entered = Entered {
        ttl: ttl.as_ref().ok().copied().flatten(),
        permissions: permissions.as_ref().ok().copied().flatten(),
        ..Entered::default()
    };
    let created = async {
        check_route_access(api, request, &identity, Route::ApiTokens, &Method::POST)?;
        let Some(permissions) = permissions? else {
            return Err(ApiError::invalid_field("permissions", "is required"));
        };
        let new_token = NewApiToken {
            permissions: Some(permissions),
            restrictions: None,
            ttl: ttl?.unwrap_or(0),
        };
        let created = api_tokens::create_api_token(&api.app, &identity, new_token).await?;
        audit(api, request, &identity, "api-token-created");
        Ok(created)
    }
    .await;
    let (api_token, full_token) = match created {
        Ok(created) => created,
        Err(error) => {
            return finish(
                api,
                pages,
                request,
                &identity,
                Err((Section::ApiTokens, error, entered)),
            )
            .await;
        }
    };
    let page = NewApiTokenPage {
        layout: Layout::new(api, "Your new API token"),
        problem: None,
        token: full_token.into_exposed_secret(),
        permissions: api_token
            .permissions
            .iter()
            .map(Permission::name)
            .collect::<Vec<_>>()
            .join(", "),
        expires: api_token.expires_at.map(format_rfc3339),
    };
    html_page(api, StatusCode::OK, &page, None, &[])
}

/// `POST /account/api-tokens/delete`: `token` is its first 8 characters, as listed.
pub async fn submit_delete(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::ApiToken, &Method::DELETE)?;
        let key = fields.required_string("token")?;
        api_tokens::delete_api_token(&api.app, &identity, &key).await?;
        audit(api, request, &identity, "api-token-deleted");
        Ok::<_, ApiError>(Notice::ApiTokenDeleted)
    }
    .await;
    finish_on_page(api, pages, request, &identity, outcome).await
}
