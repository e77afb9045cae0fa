//! The handlers, one file per resource and one function per endpoint: decode the request,
//! call the use case in `auth`, encode the answer. `http::dispatch` calls them once the
//! route's access rule has let the request through.

pub mod api_tokens;
pub mod forward_auth;
pub mod meta;
pub mod oauth;
pub mod passkeys;
pub mod passwords;
pub mod second_factor;
pub mod sessions;
pub mod sign_in;
pub mod signup;
pub mod users;
