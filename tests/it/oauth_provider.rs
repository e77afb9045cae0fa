//! A real OpenID Connect and OAuth provider on 127.0.0.1 for the OAuth tests: its own RSA
//! key (a test-only key committed as `tests/fixtures/oauth/rsa-2048.pem`), P-256 and Ed25519
//! keys made for each run, a discovery document, a JWKS endpoint, an RFC 7662 introspection
//! endpoint and a userinfo endpoint, each counting its calls. It can publish and withdraw
//! keys (a rotation), hang, or stop. For the browser sign-in it has an authorization
//! endpoint that approves at once for the account set with `sign_in_as` (or declines), and
//! a token endpoint that checks the client's secret, the PKCE verifier and the
//! `redirect_uri`, and answers an ID token (with the nonce, without the email: a conformant
//! provider puts that in userinfo) and an access token for userinfo.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey::config::{OAuthProviderConfig, OAuthProviderKind};
use latchkey::model::now_unix_seconds;
use serde_json::{Value, json};

/// The client id the server under test is registered with at this provider.
pub const CLIENT_ID: &str = "latchkey-client";
pub const CLIENT_SECRET: &str = "latchkey-client-secret";

const RSA_KEY_PEM: &str = include_str!("../fixtures/oauth/rsa-2048.pem");

/// A signing key of the provider, with its public JWK (which names its algorithm).
pub struct TestKey {
    pub key_id: String,
    pub algorithm: Algorithm,
    encoding_key: EncodingKey,
    jwk: Jwk,
}

impl TestKey {
    /// RS256 with the committed test-only RSA key (making one at run time is slow).
    pub fn rsa(key_id: &str) -> TestKey {
        let base64_body: String = RSA_KEY_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(base64_body).unwrap();
        TestKey::new(key_id, Algorithm::RS256, EncodingKey::from_rsa_der(&der))
    }

    /// ES256 with a fresh P-256 key: PKCS#8 around 32 random bytes.
    pub fn p256(key_id: &str) -> TestKey {
        let mut der =
            hex_bytes("3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420");
        der.extend_from_slice(&random_bytes());
        TestKey::new(key_id, Algorithm::ES256, EncodingKey::from_ec_der(&der))
    }

    /// EdDSA with a fresh Ed25519 key: PKCS#8 around a 32-byte random seed.
    pub fn ed25519(key_id: &str) -> TestKey {
        let mut der = hex_bytes("302e020100300506032b657004220420");
        der.extend_from_slice(&random_bytes());
        TestKey::new(key_id, Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
    }

    fn new(key_id: &str, algorithm: Algorithm, encoding_key: EncodingKey) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&encoding_key, algorithm).unwrap();
        jwk.common.key_id = Some(key_id.to_owned());
        TestKey {
            key_id: key_id.to_owned(),
            algorithm,
            encoding_key,
            jwk,
        }
    }

    /// A JWT over `claims`, with this key's `kid` and algorithm.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.key_id, claims)
    }

    /// A JWT signed by this key but naming another `kid`.
    pub fn sign_as(&self, key_id: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(key_id.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).unwrap()
    }

    pub fn jwk(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap()
    }
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

/// What an access token stands for at the provider.
#[derive(Clone)]
pub struct AccessTokenGrant {
    pub client_id: String,
    pub active: bool,
    pub userinfo: Value,
}

/// A code the authorization endpoint gave out, waiting for the token endpoint.
struct PendingCode {
    code_challenge: String,
    redirect_uri: String,
    nonce: Option<String>,
    account: Value,
}

#[derive(Default)]
struct ProviderState {
    /// Signs the ID tokens of the browser sign-in: the same key as `TestProvider::rsa`.
    id_token_key: Option<Arc<TestKey>>,
    /// The account the authorization endpoint signs in (`sub`, `email`, `email_verified`).
    signed_in_account: Option<Value>,
    /// The authorization endpoint answers `error=access_denied`.
    declining: bool,
    /// Claims the browser sign-in's ID tokens carry besides `iss`, `aud`, `sub`, times and
    /// the nonce (a provider that puts the email in the ID token too).
    id_token_extra_claims: Option<Value>,
    codes: HashMap<String, PendingCode>,
    token_requests: usize,
    issuer: String,
    published: Vec<Value>,
    access_tokens: HashMap<String, AccessTokenGrant>,
    jwks_requests: usize,
    introspection_requests: usize,
    userinfo_requests: usize,
    hanging: bool,
    connections: Vec<tokio::task::AbortHandle>,
}

pub struct TestProvider {
    pub address: SocketAddr,
    pub rsa: TestKey,
    pub p256: TestKey,
    pub ed25519: TestKey,
    state: Arc<Mutex<ProviderState>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProvider {
    /// Starts the provider with its RSA, P-256 and Ed25519 keys published.
    pub async fn start() -> TestProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (rsa, p256, ed25519) = (
            TestKey::rsa("rsa-1"),
            TestKey::p256("ec-1"),
            TestKey::ed25519("ed-1"),
        );
        let state = Arc::new(Mutex::new(ProviderState {
            issuer: format!("http://{address}"),
            published: vec![rsa.jwk(), p256.jwk(), ed25519.jwk()],
            id_token_key: Some(Arc::new(TestKey::rsa("rsa-1"))),
            ..ProviderState::default()
        }));
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&served);
                let connections = Arc::clone(&served);
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                connections
                    .lock()
                    .unwrap()
                    .connections
                    .push(connection.abort_handle());
            }
        });
        TestProvider {
            address,
            rsa,
            p256,
            ed25519,
            state,
            task,
        }
    }

    /// Closes the listening socket and every open connection: calls are refused from now on.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        for connection in self.state.lock().unwrap().connections.drain(..) {
            connection.abort();
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    pub fn publish(&self, key: &TestKey) {
        self.state.lock().unwrap().published.push(key.jwk());
    }

    pub fn withdraw(&self, key_id: &str) {
        self.state
            .lock()
            .unwrap()
            .published
            .retain(|jwk| jwk["kid"] != key_id);
    }

    /// Every call answers only after 30 s from now on.
    pub fn hang(&self) {
        self.state.lock().unwrap().hanging = true;
    }

    /// The account the authorization endpoint approves from now on.
    pub fn sign_in_as(&self, subject: &str, email: &str, email_verified: bool) {
        self.state.lock().unwrap().signed_in_account = Some(json!({
            "sub": subject,
            "email": email,
            "email_verified": email_verified,
        }));
    }

    /// The browser sign-in's ID tokens carry `claims` too from now on.
    pub fn put_in_id_tokens(&self, claims: Value) {
        self.state.lock().unwrap().id_token_extra_claims = Some(claims);
    }

    /// The authorization endpoint answers `error=access_denied` from now on.
    pub fn decline(&self) {
        self.state.lock().unwrap().declining = true;
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    pub fn jwks_requests(&self) -> usize {
        self.state.lock().unwrap().jwks_requests
    }

    pub fn introspection_requests(&self) -> usize {
        self.state.lock().unwrap().introspection_requests
    }

    pub fn userinfo_requests(&self) -> usize {
        self.state.lock().unwrap().userinfo_requests
    }

    pub fn grant_access_token(&self, token: &str, grant: AccessTokenGrant) {
        self.state
            .lock()
            .unwrap()
            .access_tokens
            .insert(token.to_owned(), grant);
    }

    /// ID-token claims as the provider issues them to our client, valid for ten minutes.
    pub fn claims(&self, subject: &str, email: &str, email_verified: bool) -> Value {
        let now = now_unix_seconds();
        json!({
            "iss": self.issuer(),
            "aud": CLIENT_ID,
            "sub": subject,
            "email": email,
            "email_verified": email_verified,
            "iat": now,
            "exp": now + 600,
        })
    }

    /// An `oidc` provider named `name` with an explicit `jwks_url`.
    pub fn oidc_config(&self, name: &str) -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: name.to_owned(),
            kind: OAuthProviderKind::Oidc,
            issuer: Some(self.issuer()),
            audiences: vec![CLIENT_ID.to_owned()],
            jwks_url: Some(self.url("/jwks")),
            ..OAuthProviderConfig::default()
        }
    }

    /// An `oidc` provider named `name` that signs people in from the browser: its
    /// endpoints discovered, its secret given.
    pub fn browser_config(&self, name: &str) -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: name.to_owned(),
            kind: OAuthProviderKind::Oidc,
            issuer: Some(self.issuer()),
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: Some(latchkey::model::Secret::new(CLIENT_SECRET.to_owned())),
            display_name: Some("Test Provider".to_owned()),
            ..OAuthProviderConfig::default()
        }
    }

    /// A `userinfo` provider named `name`, GitHub-style (numeric `id`), with introspection.
    pub fn userinfo_config(&self, name: &str) -> OAuthProviderConfig {
        OAuthProviderConfig {
            name: name.to_owned(),
            kind: OAuthProviderKind::Userinfo,
            userinfo_url: Some(self.url("/userinfo")),
            introspection_url: Some(self.url("/introspect")),
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: Some(latchkey::model::Secret::new(CLIENT_SECRET.to_owned())),
            subject_field: "id".to_owned(),
            ..OAuthProviderConfig::default()
        }
    }
}

type ProviderResponse = hyper::Response<Full<Bytes>>;

async fn answer(
    state: &Mutex<ProviderState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> ProviderResponse {
    let hanging = state.lock().unwrap().hanging;
    if hanging {
        // Never answers: whatever the server says instead comes from its own timeout.
        std::future::pending::<()>().await;
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut state = state.lock().unwrap();
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/.well-known/openid-configuration") => json_answer(
            StatusCode::OK,
            &json!({
                "issuer": state.issuer,
                "jwks_uri": format!("{}/jwks", state.issuer),
                "userinfo_endpoint": format!("{}/userinfo", state.issuer),
                "introspection_endpoint": format!("{}/introspect", state.issuer),
                "authorization_endpoint": format!("{}/authorize", state.issuer),
                "token_endpoint": format!("{}/token", state.issuer),
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            }),
        ),
        (&Method::GET, "/jwks") => {
            state.jwks_requests += 1;
            json_answer(StatusCode::OK, &json!({ "keys": state.published }))
        }
        (&Method::GET, "/authorize") => {
            let query: HashMap<String, String> =
                form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let field = |name: &str| query.get(name).cloned().unwrap_or_default();
            let redirect_uri = field("redirect_uri");
            let state_sent = field("state");
            let refusal = if field("client_id") != CLIENT_ID {
                Some("unauthorized_client")
            } else if field("response_type") != "code"
                || field("code_challenge_method") != "S256"
                || field("code_challenge").len() != 43
            {
                Some("invalid_request")
            } else if state.declining || state.signed_in_account.is_none() {
                Some("access_denied")
            } else {
                None
            };
            let back = match refusal {
                Some(error) => form_urlencoded::Serializer::new(String::new())
                    .append_pair("error", error)
                    .append_pair("state", &state_sent)
                    .append_pair("iss", &state.issuer)
                    .finish(),
                None => {
                    let code = STANDARD
                        .encode(random_bytes())
                        .replace(['+', '/', '='], "x");
                    let pending = PendingCode {
                        code_challenge: field("code_challenge"),
                        redirect_uri: redirect_uri.clone(),
                        nonce: query.get("nonce").cloned(),
                        account: state.signed_in_account.clone().unwrap(),
                    };
                    state.codes.insert(code.clone(), pending);
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("code", &code)
                        .append_pair("state", &state_sent)
                        .append_pair("iss", &state.issuer)
                        .finish()
                }
            };
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(
                hyper::header::LOCATION,
                format!("{redirect_uri}?{back}").parse().unwrap(),
            );
            response
        }
        (&Method::POST, "/token") => {
            state.token_requests += 1;
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            if header("authorization") != expected {
                return json_answer(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_client"}),
                );
            }
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let field = |name: &str| form.get(name).cloned().unwrap_or_default();
            let Some(pending) = state.codes.remove(&field("code")) else {
                return json_answer(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"}));
            };
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                <sha2::Sha256 as sha2::Digest>::digest(field("code_verifier").as_bytes()),
            );
            if field("grant_type") != "authorization_code"
                || challenge != pending.code_challenge
                || field("redirect_uri") != pending.redirect_uri
            {
                return json_answer(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"}));
            }
            let access_token = STANDARD.encode(random_bytes());
            state.access_tokens.insert(
                access_token.clone(),
                AccessTokenGrant {
                    client_id: CLIENT_ID.to_owned(),
                    active: true,
                    userinfo: pending.account.clone(),
                },
            );
            let now = now_unix_seconds();
            let mut claims = json!({
                "iss": state.issuer,
                "aud": CLIENT_ID,
                "sub": pending.account["sub"],
                "iat": now,
                "exp": now + 600,
            });
            if let Some(nonce) = pending.nonce {
                claims["nonce"] = json!(nonce);
            }
            if let Some(Value::Object(extra)) = &state.id_token_extra_claims {
                for (name, value) in extra {
                    claims[name] = value.clone();
                }
            }
            let id_token = state.id_token_key.as_ref().unwrap().sign(&claims);
            json_answer(
                StatusCode::OK,
                &json!({
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": 600,
                    "id_token": id_token,
                }),
            )
        }
        (&Method::POST, "/introspect") => {
            state.introspection_requests += 1;
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            if header("authorization") != expected {
                return json_answer(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_client"}),
                );
            }
            let token = form_urlencoded::parse(&body)
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default();
            let answer = match state.access_tokens.get(&token) {
                Some(grant) if grant.active => json!({
                    "active": true,
                    "client_id": grant.client_id,
                    "token_type": "Bearer",
                }),
                _ => json!({ "active": false }),
            };
            json_answer(StatusCode::OK, &answer)
        }
        (&Method::GET, "/userinfo") => {
            state.userinfo_requests += 1;
            let token = header("authorization")
                .strip_prefix("Bearer ")
                .unwrap_or("")
                .to_owned();
            match state.access_tokens.get(&token) {
                Some(grant) if grant.active => json_answer(StatusCode::OK, &grant.userinfo),
                _ => json_answer(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": "Bad credentials"}),
                ),
            }
        }
        _ => json_answer(StatusCode::NOT_FOUND, &json!({})),
    }
}

fn json_answer(status: StatusCode, body: &Value) -> ProviderResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
