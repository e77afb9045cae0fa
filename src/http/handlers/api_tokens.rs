//! Standalone API tokens (create, list, read, change, delete) and minted tokens.

use hyper::StatusCode;

use crate::auth::Identity;
use crate::auth::api_tokens::{self, ApiTokenChange, MintRequest, NewApiToken};
use crate::http::Api;
use crate::http::dto::{ApiTokenEntry, ApiTokenList, JwtToken, Timestamp};
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{Response, empty_response, json_response};

/// `include-expired` from the query.
fn include_expired(request: &Request) -> Result<bool, ApiError> {
    Ok(request.query.boolean("include-expired")?.unwrap_or(false))
}

/// `GET /auth/api-token`.
pub async fn list(api: &Api, request: &Request, identity: Identity) -> Result<Response, ApiError> {
    let tokens =
        api_tokens::list_api_tokens(&api.app, &identity, include_expired(request)?).await?;
    let now = api.app.clock.now_unix_seconds();
    Ok(json_response(
        StatusCode::OK,
        &ApiTokenList {
            api_tokens: tokens
                .iter()
                .map(|api_token| ApiTokenEntry::from_api_token(api_token, None, now))
                .collect(),
        },
    ))
}

/// `POST /auth/api-token`: the only answer that shows the whole token.
pub async fn create(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let new_token = NewApiToken {
        permissions: fields.permission_set("permissions")?,
        restrictions: fields.permission_set("restrictions")?,
        ttl: fields.unsigned("ttl")?.unwrap_or(0),
    };
    let (api_token, full_token) =
        api_tokens::create_api_token(&api.app, &identity, new_token).await?;
    Ok(json_response(
        StatusCode::OK,
        &ApiTokenEntry::from_api_token(
            &api_token,
            Some(full_token.into_exposed_secret()),
            api.app.clock.now_unix_seconds(),
        ),
    ))
}

/// `GET /auth/api-token/{token}`.
pub async fn get(
    api: &Api,
    request: &Request,
    identity: Identity,
    key: &str,
) -> Result<Response, ApiError> {
    let api_token =
        api_tokens::find_api_token(&api.app, &identity, key, include_expired(request)?).await?;
    Ok(json_response(
        StatusCode::OK,
        &ApiTokenEntry::from_api_token(&api_token, None, api.app.clock.now_unix_seconds()),
    ))
}

/// `PUT /auth/api-token/{token}`: ttl restarts from now; permissions add, or replace with
/// `reset-permissions`; restrictions replace.
pub async fn update(
    api: &Api,
    request: &mut Request,
    identity: Identity,
    key: &str,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let change = ApiTokenChange {
        ttl: fields.unsigned("ttl")?,
        permissions: fields.permission_set("permissions")?,
        reset_permissions: fields.boolean("reset-permissions")?.unwrap_or(false),
        restrictions: fields.permission_set("restrictions")?,
    };
    let api_token = api_tokens::update_api_token(&api.app, &identity, key, change).await?;
    Ok(json_response(
        StatusCode::OK,
        &ApiTokenEntry::from_api_token(&api_token, None, api.app.clock.now_unix_seconds()),
    ))
}

/// `DELETE /auth/api-token/{token}`.
pub async fn delete(api: &Api, identity: Identity, key: &str) -> Result<Response, ApiError> {
    api_tokens::delete_api_token(&api.app, &identity, key).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// `POST /auth/jwt`: `{expire, token}`.
pub async fn mint(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let mint_request = MintRequest {
        claims: fields.object("claims")?.unwrap_or_default(),
        long_term_token: fields.boolean("long-term-token")?.unwrap_or(true),
        permissions: fields.permission_set("permissions")?,
    };
    let client = request.client_info(api);
    let (session, token) =
        api_tokens::mint_token(&api.app, &identity, mint_request, &client).await?;
    Ok(json_response(
        StatusCode::OK,
        &JwtToken {
            expire: Timestamp(session.expire),
            token: token.into_exposed_secret(),
        },
    ))
}
