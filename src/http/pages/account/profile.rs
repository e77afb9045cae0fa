//! `POST /account/profile`: first and last name, through `auth::account::update_own_profile`
//! as `PUT /user/current` does (the same name rule, the same access rule).

use hyper::Method;

use crate::auth::account::{self, ProfileChange};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Notice, Section};
use crate::http::pages::account::{AccountForm, check_route_access, finish, read_account_form};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;

/// `POST /account/profile`. An emptied field clears that name, as the API stores `""`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let first_name = fields.string("first-name")?;
    let last_name = fields.string("last-name")?;
    let entered = Entered {
        first_name: first_name.clone(),
        last_name: last_name.clone(),
        ..Entered::default()
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::CurrentUser, &Method::PUT)?;
        let change = ProfileChange {
            first_name,
            last_name,
            permissions: None,
        };
        account::update_own_profile(&api.app, &identity, change).await?;
        Ok::<_, ApiError>(Notice::ProfileSaved)
    }
    .await
    .map_err(|error| (Section::Profile, error, entered));
    finish(api, pages, request, &identity, outcome).await
}
