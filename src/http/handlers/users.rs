//! Users: the caller's own profile (`/user/current`, the hot path), sub-users, other
//! reachable users, and the paged listing.

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use crate::auth::Identity;
use crate::auth::account::{self, NewSubUser, ProfileChange, UserFilter, UserSortField};
use crate::auth::password::Password;
use crate::auth::second_factor;
use crate::http::Api;
use crate::http::dto::{Pagination, SecondFactors, Sort, UserList, UserProfile, UserShort};
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie, empty_response, json_response};
use crate::model::{Status, UserId};

const DEFAULT_PAGE_LIMIT: u64 = 10;
const MAX_PAGE_LIMIT: u64 = 100;

/// `GET /user/current`: the hot path; no write, no hashing. The token check read the
/// `second-factors` the user holds with the credential (`routes::also_read`).
pub async fn current_user(api: &Api, identity: Identity) -> Result<Response, ApiError> {
    let second_factors = match identity.second_factors {
        Some(summary) => summary,
        None => second_factor::summary(&api.app, identity.user.id).await?,
    };
    Ok(json_response(
        StatusCode::OK,
        &UserProfile {
            second_factors: Some(SecondFactors::from_summary(&second_factors)),
            ..UserProfile::from_user(&identity.user, identity.parent.as_ref())
        },
    ))
}

/// `POST /user`: creates a sub-user of the caller; 201 with its profile.
pub async fn create_sub_user(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let new_sub_user = NewSubUser {
        email: fields.required_string("email")?,
        password: Password::new(fields.required_string("password")?),
        first_name: fields.string("first-name")?,
        last_name: fields.string("last-name")?,
        permissions: fields.permission_set("permissions")?,
    };
    let user = account::create_sub_user(&api.app, &identity, new_sub_user).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &UserProfile::from_user(&user, Some(&identity.user)),
    ))
}

/// `PUT /user/current`: only the names; other fields are ignored.
pub async fn update_current_user(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    let change = ProfileChange {
        first_name: fields.string("first-name")?,
        last_name: fields.string("last-name")?,
        permissions: None,
    };
    let user = account::update_own_profile(&api.app, &identity, change).await?;
    Ok(json_response(
        StatusCode::OK,
        &UserProfile::from_user(&user, identity.parent.as_ref()),
    ))
}

/// `PUT /user/{user-id}`: names, and `permissions` replacing the target's set.
pub async fn update_user(
    api: &Api,
    request: &mut Request,
    identity: Identity,
    target_id: UserId,
) -> Result<Response, ApiError> {
    let fields = request.fields(api).await?;
    if !matches!(fields.string_list("restrictions"), Ok(None)) {
        return Err(ApiError::invalid_field(
            "restrictions",
            "cannot be set on a user",
        ));
    }
    let change = ProfileChange {
        first_name: fields.string("first-name")?,
        last_name: fields.string("last-name")?,
        permissions: fields.permission_set("permissions")?,
    };
    let user = account::update_user_profile(&api.app, &identity, target_id, change).await?;
    let parent = account::parent_of(&api.app, &user).await?;
    Ok(json_response(
        StatusCode::OK,
        &UserProfile::from_user(&user, parent.as_ref()),
    ))
}

/// `GET /user/{user-id}`: the caller's own id answers like `/user/current`.
pub async fn get_user(
    api: &Api,
    identity: Identity,
    target_id: UserId,
) -> Result<Response, ApiError> {
    if target_id == identity.user.id {
        return current_user(api, identity).await;
    }
    let user = account::reachable_user(&api.app, &identity, target_id).await?;
    let parent = account::parent_of(&api.app, &user).await?;
    Ok(json_response(
        StatusCode::OK,
        &UserProfile::from_user(&user, parent.as_ref()),
    ))
}

/// `DELETE /user/current`.
pub async fn delete_current_user(api: &Api, identity: Identity) -> Result<Response, ApiError> {
    account::delete_own_account(&api.app, &identity).await?;
    let mut response = empty_response(StatusCode::NO_CONTENT);
    append_session_cookie(&mut response, api, "", 0);
    Ok(response)
}

/// `GET /user`: filters, `pagination[page]`, `pagination[limit]`, `sort[field]`,
/// `sort[order]`.
pub async fn list_users(
    api: &Api,
    request: &mut Request,
    identity: Identity,
) -> Result<Response, ApiError> {
    let query = &request.query;
    let statuses = query
        .string_list("status")?
        .unwrap_or_default()
        .iter()
        .map(|name| {
            Status::from_name(name)
                .ok_or_else(|| ApiError::invalid_field("status", "names an unknown status"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parent_id = query.unsigned("parent-id")?;
    let filter = UserFilter {
        statuses,
        parent_id,
        email: query.string("email")?,
        email_contains: query.string("email-contains")?,
    };
    let page = query.unsigned("pagination[page]")?.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::invalid_field(
            "pagination[page]",
            "must be at least 1",
        ));
    }
    let limit = query
        .unsigned("pagination[limit]")?
        .unwrap_or(DEFAULT_PAGE_LIMIT)
        .clamp(1, MAX_PAGE_LIMIT);
    let (sort_field, sort_name) = match query.string("sort[field]")?.as_deref() {
        None | Some("id") => (UserSortField::Id, "id"),
        Some("username") => (UserSortField::Username, "username"),
        Some("email") => (UserSortField::Email, "email"),
        Some("status") => (UserSortField::Status, "status"),
        Some("created") => (UserSortField::Created, "created"),
        Some("updated") => (UserSortField::Updated, "updated"),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "sort[field]",
                "names an unknown field",
            ));
        }
    };
    let (descending, order_name) = match query.string("sort[order]")?.as_deref() {
        None | Some("asc") => (false, "asc"),
        Some("desc") => (true, "desc"),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "sort[order]",
                "must be asc or desc",
            ));
        }
    };
    let page = usize::try_from(page).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(10);
    let (users, total) = account::list_users(
        &api.app,
        &identity,
        &filter,
        (sort_field, descending),
        page,
        limit,
    )
    .await?;
    let mut applied = Map::new();
    if !filter.statuses.is_empty() {
        applied.insert(
            "status".into(),
            json!(
                filter
                    .statuses
                    .iter()
                    .map(|status| status.name())
                    .collect::<Vec<_>>()
            ),
        );
    }
    if let Some(parent_id) = filter.parent_id {
        applied.insert("parent-id".into(), json!(parent_id));
    }
    if let Some(email) = &filter.email {
        applied.insert("email".into(), Value::String(email.clone()));
    }
    if let Some(text) = &filter.email_contains {
        applied.insert("email-contains".into(), Value::String(text.clone()));
    }
    Ok(json_response(
        StatusCode::OK,
        &UserList {
            filter: applied,
            pagination: Pagination {
                count: users.len(),
                limit,
                page,
                total,
            },
            sort: Sort {
                field: sort_name,
                order: order_name,
            },
            users: users.iter().map(UserShort::from_user).collect(),
        },
    ))
}
