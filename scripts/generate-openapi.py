#!/usr/bin/env python3
"""Writes src/http/openapi.json: the vendor's schemas (from docs/vendor) where they exist,
Latchkey's own for the endpoints the vendor lacks, and every status each route can answer.
Run it after changing a route; tests/it/contract.rs fails until the document matches."""
import copy
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
vendor = json.load(open(os.path.join(ROOT, 'docs', 'vendor', 'probe-openapi-2025-06.json')))
vs = vendor['components']['schemas']
keep = ['AuthDeleteSignOutResponse','AuthGetSessionsResponse','AuthJWTToken','AuthOAuthProviderToken','AuthPassword',
 'AuthPostOAuthSignInCheckAuthResult','AuthPostOAuthSignInRequest','AuthPostOAuthSignInResponse','AuthPostSignInRequest',
 'AuthPostSignInResponse','AuthPostVerifyRequest','AuthPostVerifyResponse','AuthSession','FormDataAuthOAuthProviderToken',
 'FormDataAuthPostOAuthSignInRequest','FormDataAuthPostSignInRequest','FormDataAuthPutCurrentPasswordRequest',
 'FormDataAuthPutUserPasswordRequest','PaginationPagination','PaginationRequest','RouterUnauthorizedError',
 'SortfieldSortInternalRouterRoutesUserSortFieldInternalToolsOrderfieldString','UserFilterParams','UserGetUserResponse',
 'UserGetUsersResponse','UserPutCurrentUserProfileRequest','UserPutCurrentUserProfileResponse','UserPutUserProfileRequest',
 'UserPutUserProfileResponse','UserShort','UserSortField','UsercommonPermission','UsercommonPermissionName','UsercommonRole',
 'UsercommonStatus','PlanShort','OrderfieldString']
schemas = {k: copy.deepcopy(vs[k]) for k in keep}
ref = lambda n: {'$ref': f'#/components/schemas/{n}'}
perm_list = {'type': 'array', 'items': ref('UsercommonPermissionName')}
perm_map = {'type': 'object', 'additionalProperties': ref('UsercommonPermission')}
# API.md section 15, rules 15 and 16: a bare address (IDNA domain, NFC local part); names
# without control characters.
email_field = {'type': 'string', 'format': 'email', 'minLength': 5, 'maxLength': 254,
  'description': 'A bare address: no display name, quotes, angle brackets, comments or IP literal; '
                 'local part at most 64 characters; invisible, format and control characters refused.'}
name_field = {'type': 'string', 'maxLength': 255, 'description': 'No control, line-breaking or text-direction characters.'}
schemas.update({
 'AuthApiToken': {'type': 'object', 'properties': {
   'created': {'type': 'string', 'format': 'date-time'}, 'updated': {'type': 'string', 'format': 'date-time'},
   'expired': {'type': ['boolean', 'null']}, 'expires-at': {'type': ['string', 'null'], 'format': 'date-time'},
   'permissions': perm_map, 'restrictions': perm_map,
   'token': {'type': 'string', 'description': 'The whole token in the answer that creates it; afterwards its first 8 characters and an ellipsis.'}}},
 'AuthGetApiTokenListResponse': {'type': 'object', 'properties': {'api-tokens': {'type': ['array', 'null'], 'items': ref('AuthApiToken')}}},
 'AuthPostApiTokenRequest': {'type': 'object', 'properties': {'permissions': perm_list, 'restrictions': perm_list,
   'ttl': {'type': 'integer', 'minimum': 0, 'default': 0, 'description': 'Seconds; 0 never expires.'}}},
 'AuthPutApiTokenRequest': {'type': 'object', 'properties': {'permissions': perm_list, 'restrictions': perm_list,
   'reset-permissions': {'type': 'boolean', 'default': False}, 'ttl': {'type': 'integer', 'minimum': 0}}},
 'AuthPostJWTTokenRequest': {'type': 'object', 'properties': {'claims': {'type': 'object', 'additionalProperties': {},
   'description': 'Extra claims; iss, sub, aud, exp, nbf, iat, jti, sid, permissions, email, role, status, username, parent, name and user-id are refused in any ASCII case, and so is more than 4 KiB.'},
   'long-term-token': {'type': 'boolean', 'default': True}, 'permissions': perm_list}},
 'AuthPostSignUpRequest': {'type': 'object', 'required': ['email', 'password'], 'properties': {
   'email': email_field,
   'password': {'type': 'string', 'format': 'password', 'minLength': 6, 'maxLength': 72},
   'first-name': name_field, 'last-name': name_field}},
 'AuthEmailRequest': {'type': 'object', 'required': ['email'], 'properties': {
   'email': email_field}},
 'AuthSuccessResponse': {'type': 'object', 'properties': {'success': {'type': 'boolean'}}},
 'AuthPutCurrentPasswordRequest': {'type': 'object', 'properties': {
   'old-password': {'type': 'string', 'format': 'password', 'maxLength': 72},
   'new-password': {'type': 'string', 'format': 'password', 'minLength': 6, 'maxLength': 72},
   'password-update-token': {'type': 'string', 'description': 'From a reset email; used without a credential.'},
   'logout-all': {'type': 'boolean', 'default': False}}},
 'AuthPasswordResetConfirmRequest': {'type': 'object', 'required': ['password-update-token', 'new-password'], 'properties': {
   'password-update-token': {'type': 'string'}, 'new-password': {'type': 'string', 'minLength': 6, 'maxLength': 72}}},
 'AuthKey': {'type': 'object', 'properties': {'id': {'type': 'string', 'description': 'PASERK id (k4.pid.…)'},
   'key': {'type': 'string', 'description': 'PASERK public key (k4.public.…)'}, 'status': {'type': 'string', 'enum': ['active', 'next', 'retired'],
     'description': 'active: signs; next: published ahead, signs later; retired: only verifies'},
   'created': {'type': 'string', 'format': 'date-time'}}},
 'AuthKeysResponse': {'type': 'object', 'properties': {'keys': {'type': 'array', 'items': ref('AuthKey')}}},
 'HealthResponse': {'type': 'object', 'properties': {'status': {'type': 'string', 'enum': ['ok']}}},
 'AuthPasskeyCeremony': {'type': 'object', 'required': ['challenge-id', 'options'], 'properties': {
   'challenge-id': {'type': 'string', 'format': 'uuid', 'description': 'Send it back with the ceremony\'s answer, within 5 minutes; it finishes one ceremony.'},
   'options': {'type': 'object', 'description': 'The browser\'s JSON form of the publicKey options '
     '(PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON).'}}},
 'AuthPasskey': {'type': 'object', 'required': ['id', 'name', 'created'], 'properties': {
   'id': {'type': 'string', 'format': 'uuid'}, 'name': {'type': 'string', 'minLength': 1, 'maxLength': 100},
   'created': {'type': 'string', 'format': 'date-time'},
   'last-used': {'type': 'string', 'format': 'date-time', 'description': 'Absent until the passkey first signs in.'}}},
 'AuthGetPasskeysResponse': {'type': 'object', 'required': ['passkeys'], 'properties': {
   'passkeys': {'type': 'array', 'items': ref('AuthPasskey')}}},
 'AuthPostPasskeyRegisterStartRequest': {'type': 'object', 'properties': {
   'password': {'type': 'string', 'format': 'password', 'maxLength': 72,
     'description': 'The caller\'s password; an account without one needs a session signed in within 10 minutes instead.'}}},
 'AuthPostPasskeyRegisterFinishRequest': {'type': 'object', 'required': ['challenge-id', 'name', 'credential'], 'properties': {
   'challenge-id': {'type': 'string', 'format': 'uuid'},
   'name': {'type': 'string', 'minLength': 1, 'maxLength': 100, 'description': 'Trimmed; no control, line-breaking or text-direction characters.'},
   'credential': {'type': 'object', 'description': 'The JSON form of the PublicKeyCredential from navigator.credentials.create.'}}},
 'AuthPostPasskeySignInStartRequest': {'type': 'object', 'properties': {}},
 'AuthPostPasskeySignInFinishRequest': {'type': 'object', 'required': ['challenge-id', 'credential'], 'properties': {
   'challenge-id': {'type': 'string', 'format': 'uuid'},
   'credential': {'type': 'object', 'description': 'The JSON form of the PublicKeyCredential from navigator.credentials.get.'},
   'long-term-token': {'type': 'boolean', 'default': True}, 'logout-other': {'type': 'boolean', 'default': False},
   'current-user': {'type': 'string'}, 'ret-url': {'type': 'string'}}},
 'UserPostUserRequest': {'type': 'object', 'required': ['email', 'password'], 'properties': {
   'email': email_field,
   'password': {'type': 'string', 'format': 'password', 'minLength': 6, 'maxLength': 72},
   'first-name': name_field, 'last-name': name_field, 'permissions': perm_list}},
})
# API.md section 10: second factors.
password_field = {'type': 'string', 'format': 'password', 'maxLength': 72,
  'description': "The account's password, checked again; an account without one (made by OAuth) sends none and needs a sign-in within the last 10 minutes."}
code_field = {'type': 'string', 'pattern': '^[0-9]{6}$', 'description': 'A TOTP code (RFC 6238: SHA-1, 6 digits, 30 s).'}
recovery_code_field = {'type': 'string', 'description': 'A recovery code, xxxxx-xxxxx (any case; the hyphen and spaces optional).'}
second_factor_fields = {
  'mfa-token': {'type': 'string', 'description': "From the 403 second-factor-required answer's context: single use, 5 minutes."},
  'code': code_field, 'recovery-code': recovery_code_field,
  'challenge-id': {'type': 'string', 'description': 'A passkey challenge from POST /auth/passkey/sign-in/start with this mfa-token.'},
  'current-user': {'type': 'string'}, 'ret-url': {'type': 'string', 'format': 'url'}}
schemas.update({
 'SecondFactors': {'type': 'object', 'required': ['totp', 'passkeys', 'recovery-codes-left'], 'properties': {
   'totp': {'type': 'boolean'}, 'passkeys': {'type': 'integer', 'minimum': 0},
   'recovery-codes-left': {'type': 'integer', 'minimum': 0}}},
 'AuthMfaPasswordRequest': {'type': 'object', 'properties': {'password': password_field}},
 'AuthPostTotpResponse': {'type': 'object', 'required': ['secret', 'otpauth-uri'], 'properties': {
   'secret': {'type': 'string', 'pattern': '^[A-Z2-7]+$', 'description': 'The 160-bit secret, base32 (RFC 4648) without padding.'},
   'otpauth-uri': {'type': 'string', 'description': 'otpauth://totp/<issuer>:<email>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30'}}},
 'AuthPostTotpConfirmRequest': {'type': 'object', 'required': ['code'], 'properties': {'code': code_field}},
 'AuthDeleteTotpRequest': {'type': 'object', 'properties': {'password': password_field, 'code': code_field,
   'recovery-code': recovery_code_field}, 'description': 'password, and one of code or recovery-code.'},
 'AuthRecoveryCodesResponse': {'type': 'object', 'required': ['recovery-codes'], 'properties': {
   'recovery-codes': {'type': 'array', 'minItems': 10, 'maxItems': 10, 'items': {'type': 'string'},
     'description': 'Ten single-use codes, shown this once.'}}},
 'AuthPostSignInSecondFactorRequest': {'type': 'object', 'required': ['mfa-token'],
   'description': 'mfa-token, and one of code, recovery-code, or challenge-id with credential.',
   'properties': {**second_factor_fields, 'credential': {'type': 'object', 'additionalProperties': {},
     'description': "The browser's PublicKeyCredential assertion, as JSON."}}},
 'FormDataAuthPostSignInSecondFactorRequest': {'type': 'object', 'required': ['mfa-token'],
   'properties': second_factor_fields},
})
schemas['UserGetUserResponse']['properties']['second-factors'] = {**ref('SecondFactors'),
  'description': 'What the user holds; on GET /user/current (and GET /user/{user-id} with its own id).'}
schemas['UserPutUserProfileRequest'] = copy.deepcopy(vs['UserPutUserProfileRequest'])
schemas['UserPutUserProfileRequest']['properties']['permissions'] = perm_list
# The form variants of the password bodies carry the vendor's required lists; ours are looser.
STD = [{'api_key_header': []}, {'api_key': []}, {'jwt-token': []}, {'jwt-cookie': []}, {'jwt': []}]
OPTIONAL = STD + [{}]
def error(desc):
    return {'description': desc, 'content': {'application/json': {'schema': ref('RouterUnauthorizedError')}}}
ERRORS = {'400': 'Malformed or invalid input', '401': 'No valid credential', '403': 'Not allowed',
  '404': 'No such thing', '405': 'Method not allowed', '409': 'Conflict', '413': 'Body too large',
  '415': 'Unsupported media type', '429': 'Too many attempts', '503': 'Overloaded or draining'}
def errors(*codes):
    return {code: error(ERRORS[code]) for code in codes}
def body(json_schema, form_schema=None):
    content = {'application/json': {'schema': json_schema}}
    content['application/x-www-form-urlencoded'] = {'schema': form_schema or json_schema}
    return {'content': content}
def ok(code, schema=None, description='OK', content_type='application/json'):
    if schema is None:
        return {code: {'description': description}}
    return {code: {'description': description, 'content': {content_type: {'schema': schema}}}}
HTML = {'type': 'string'}
logout_all = {'name': 'logout-all', 'in': 'query', 'schema': {'type': 'boolean', 'default': False}}
user_id = {'name': 'user-id', 'in': 'path', 'required': True, 'schema': {'type': 'integer', 'minimum': 1}}
session_id = {'name': 'session-id', 'in': 'path', 'required': True, 'schema': {'type': 'string', 'format': 'uuid'}}
token_param = {'name': 'token', 'in': 'path', 'required': True, 'description': 'The API token, or its first 8 characters.',
  'schema': {'type': 'string', 'pattern': '^([0-9a-f]{8}|[0-9a-f]{64})$'}}
passkey_id = {'name': 'passkey-id', 'in': 'path', 'required': True, 'schema': {'type': 'string', 'format': 'uuid'}}
def json_body(schema, required=True):
    return {'required': required, 'content': {'application/json': {'schema': schema}}}
include_expired = {'name': 'include-expired', 'in': 'query', 'schema': {'type': 'boolean', 'default': False}}
recaptcha_optional = {'name': 'X-Recaptcha-Token', 'in': 'header', 'schema': {'type': 'string', 'minLength': 6},
  'description': 'Checked when a captcha provider is configured.'}
W = ('400','401','403','404','405','409','413','415','429','503')
def op(operation_id, summary, responses, security=None, parameters=None, request=None, tags=('Auth',)):
    o = {'tags': list(tags), 'summary': summary, 'operationId': operation_id,
         'responses': {**errors(*W), **dict(responses)}}
    if security is not None: o['security'] = security
    if parameters: o['parameters'] = parameters
    if request: o['requestBody'] = request
    return o
# The browser OAuth routes answer pages (HTML), their errors too.
def page_op(operation_id, summary, responses, parameters):
    page_errors = {code: {'description': ERRORS[code] + ', drawn as a page',
      'content': {'text/html': {'schema': HTML}}} for code in W}
    return {'tags': ['Auth'], 'summary': summary, 'operationId': operation_id,
            'responses': {**page_errors, **responses}, 'parameters': parameters}
oauth_provider = {'name': 'provider', 'in': 'path', 'required': True, 'schema': {'type': 'string'},
  'description': 'The name of an [[oauth.providers]] table that offers the browser sign-in.'}
P = '/frontend/api/v1'
paths = {
 P+'/auth/sign-in': {'post': op('routes/auth.PostSignIn', 'Authenticate user by username(email) and password',
   {**ok('200', ref('AuthPostSignInResponse')), **ok('303', description='A form with ret-url: redirected there, with the jwt cookie')},
   request=body(ref('AuthPostSignInRequest'), ref('FormDataAuthPostSignInRequest')))},
 P+'/auth/oauth-sign-in': {'post': op('routes/auth.PostOAuthSignIn', 'Authenticate user by oauth provider token',
   {**ok('200', ref('AuthPostOAuthSignInResponse')), **ok('303', description='A form with ret-url: redirected there')},
   parameters=[{'name': n, 'in': 'cookie', 'schema': {'type': 'string'}} for n in ['oauth-provider-name', 'oauth-email', 'oauth-provider-token']],
   request=body(ref('AuthPostOAuthSignInRequest'), ref('FormDataAuthPostOAuthSignInRequest')))},
 P+'/auth/sign-out': {'delete': op('routes/auth.DeleteSignOut', 'Invalidate current JWT token session or invalidate all sessions',
   ok('200', ref('AuthDeleteSignOutResponse')), STD,
   [logout_all, {'name': 'ret-url', 'in': 'query', 'schema': {'type': ['null', 'string'], 'format': 'url'}}])},
 P+'/auth/session': {
   'get': op('routes/auth.GetSessions', 'Get list of active sessions', ok('200', ref('AuthGetSessionsResponse')), STD),
   'delete': op('routes/auth.DeleteSessions', 'Delete all active sessions', ok('204', description='No Content'), STD)},
 P+'/auth/session/{session-id}': {
   'get': op('routes/auth.GetSession', 'Get one active session', ok('200', ref('AuthSession')), STD, [session_id]),
   'delete': op('routes/auth.DeleteSession', 'Delete active session', ok('204', description='No Content'), STD, [session_id])},
 P+'/auth/current/password': {'put': op('routes/auth.PutCurrentPassword',
   'Update current user password (with a credential), or set it with a reset token (without one)',
   ok('204', description='No Content'), OPTIONAL, [logout_all], body(ref('AuthPutCurrentPasswordRequest')))},
 P+'/auth/{user-id}/password': {'put': op('routes/auth.PutUserPassword', 'Update sub user password',
   ok('204', description='No Content'), STD, [logout_all, user_id],
   body(ref('FormDataAuthPutUserPasswordRequest')))},
 P+'/auth/api-token': {
   'get': op('routes/auth.GetApiTokenList', 'List API Tokens', ok('200', ref('AuthGetApiTokenListResponse')), STD, [include_expired]),
   'post': op('routes/auth.PostApiToken', 'Create API Token', ok('200', ref('AuthApiToken')), STD, None, body(ref('AuthPostApiTokenRequest')))},
 P+'/auth/api-token/{token}': {
   'get': op('routes/auth.GetApiToken', 'Get API Token', ok('200', ref('AuthApiToken')), STD, [token_param, include_expired]),
   'put': op('routes/auth.PutApiToken', 'Refresh API Token or set Token TTL and change permissions', ok('200', ref('AuthApiToken')), STD, [token_param], body(ref('AuthPutApiTokenRequest'))),
   'delete': op('routes/auth.DeleteApiToken', 'Delete API Token', ok('204', description='No Content'), STD, [token_param])},
 P+'/auth/jwt': {'post': op('routes/auth.PostJWTToken', 'Generate new JWT Token (a PASETO v4.public token)',
   ok('200', ref('AuthJWTToken')), STD, None, body(ref('AuthPostJWTTokenRequest')))},
 P+'/auth/sign-up': {'post': op('routes/auth.PostSignUp', 'Create a pending account and email a verification link',
   ok('200', ref('AuthSuccessResponse')), None, [recaptcha_optional], body(ref('AuthPostSignUpRequest')))},
 P+'/auth/verify': {
   'get': op('routes/auth.GetVerifyPage', 'The page an email link opens; its form completes the verification',
     ok('200', HTML, content_type='text/html'), None, [{'name': 'token', 'in': 'query', 'schema': {'type': 'string'}}]),
   'post': op('routes/auth.PostVerify', 'Verify Sign-up email', ok('200', ref('AuthPostVerifyResponse')), None,
     [{'name': 'X-Recaptcha-Token', 'in': 'header', 'required': True, 'schema': {'minLength': 6, 'type': 'string'}}],
     body(ref('AuthPostVerifyRequest')))},
 P+'/auth/verify/resend': {'post': op('routes/auth.PostVerifyResend', 'Email a new verification link (the same answer always)',
   ok('200', ref('AuthSuccessResponse')), None, [recaptcha_optional], body(ref('AuthEmailRequest')))},
 P+'/auth/password-reset': {
   'get': op('routes/auth.GetPasswordResetPage', 'The page a reset email opens; its form sets the new password',
     ok('200', HTML, content_type='text/html'), None, [{'name': 'token', 'in': 'query', 'schema': {'type': 'string'}}]),
   'post': op('routes/auth.PostPasswordReset', 'Email a password-reset link (the same answer always)',
     ok('200', ref('AuthSuccessResponse')), None, [recaptcha_optional], body(ref('AuthEmailRequest')))},
 P+'/auth/password-reset/confirm': {'post': op('routes/auth.PostPasswordResetConfirm', "The reset page's form",
   # A refusal the page itself answers is an HTML page with the error's own status; one
   # before it (the body's size or type) is the usual JSON error.
   {**ok('200', HTML, content_type='text/html'),
    **{code: {'description': ERRORS[code] + '; the page says why',
              'content': {'text/html': {'schema': HTML},
                          'application/json': {'schema': ref('RouterUnauthorizedError')}}} for code in W}},
   None, None,
   {'content': {'application/x-www-form-urlencoded': {'schema': ref('AuthPasswordResetConfirmRequest')}}})},
 P+'/auth/keys': {'get': op('routes/auth.GetKeys', 'Public keys that verify signed tokens (PASERK)',
   {**ok('200', ref('AuthKeysResponse')), **ok('304', description='Not Modified')}, None,
   [{'name': 'If-None-Match', 'in': 'header', 'schema': {'type': 'string'}}])},
 P+'/user': {
   'get': op('routes/user.GetUsers', 'List users', ok('200', ref('UserGetUsersResponse')), STD, [
     {'name': 'status', 'in': 'query', 'schema': {'type': 'array', 'items': ref('UsercommonStatus')}, 'explode': True},
     {'name': 'parent-id', 'in': 'query', 'schema': {'type': 'integer', 'minimum': 1}},
     {'name': 'email', 'in': 'query', 'schema': {'type': 'string'}},
     {'name': 'email-contains', 'in': 'query', 'schema': {'type': 'string'}},
     {'name': 'pagination', 'in': 'query', 'schema': ref('PaginationRequest'), 'style': 'deepObject', 'explode': True},
     {'name': 'sort', 'in': 'query', 'schema': ref('SortfieldSortInternalRouterRoutesUserSortFieldInternalToolsOrderfieldString'), 'style': 'deepObject', 'explode': True}],
     tags=('User',)),
   'post': op('routes/user.PostUser', 'Create a sub-user of the caller', ok('201', ref('UserGetUserResponse'), 'Created'), STD, None,
     body(ref('UserPostUserRequest')), tags=('User',))},
 P+'/user/current': {
   'get': op('routes/user.GetCurrentUser', 'Get current user profile (401 without a valid credential)', ok('200', ref('UserGetUserResponse')), STD, tags=('User',)),
   'put': op('routes/user.PutCurrentUserProfile', 'Update user profile', ok('200', ref('UserPutCurrentUserProfileResponse')), STD, None,
     body(ref('UserPutCurrentUserProfileRequest')), tags=('User',)),
   'delete': op('routes/user.DeleteCurrentUser', 'Delete current user, its sub-users and all their sessions and tokens',
     ok('204', description='No Content'), STD, tags=('User',))},
 P+'/user/{user-id}': {
   'get': op('routes/user.GetUser', 'Get user by id (401 without a valid credential)', ok('200', ref('UserGetUserResponse')), STD, [user_id], tags=('User',)),
   'put': op('routes/user.PutUserProfile', 'Update sub user profile by id', ok('200', ref('UserPutUserProfileResponse')), STD, [user_id],
     body(ref('UserPutUserProfileRequest')), tags=('User',))},
 P+'/health': {'get': op('routes/health.GetHealth', 'Health: 200 while serving, 503 while draining', ok('200', ref('HealthResponse')), None, tags=('Health',)),
   'head': op('routes/health.HeadHealth', 'Health without a body: 200 while serving, 503 while draining', ok('200', description='Serving; no body'), None, tags=('Health',))},
 P+'/auth/forward': {m: op(f'routes/auth.{m.capitalize()}Forward',
   'Forward auth for a reverse proxy (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth): '
   'may the request the proxy holds pass? The original URL comes from X-Original-URL or X-Forwarded-Proto/Host/Uri, '
   'read only from trusted_proxies; [[forward_auth.rules]] apply to it',
   {'200': {'description': 'Allowed; no body. The Remote-* headers name the caller',
      'headers': {h: {'schema': {'type': 'string'}, 'description': d} for h, d in [
        ('Remote-User', 'The username (the normalized email)'), ('Remote-Email', 'The email'),
        ('Remote-Name', 'First and last name'), ('Remote-Groups', 'The role'), ('Remote-User-Id', 'The user id'),
        ('Remote-Role', 'The role'), ('Remote-Permissions', 'The effective permissions, comma-separated, sorted'),
        ('Remote-Session', 'The session id; empty for a standalone API token')]}},
    **ok('302', description='redirect=true without a valid credential: to the sign-in page, with the original URL as ret-url when the ret-url rule allows it')},
   STD,
   [{'name': 'redirect', 'in': 'query', 'schema': {'type': 'boolean', 'default': False}},
    {'name': 'X-Original-URL', 'in': 'header', 'schema': {'type': 'string'}},
    {'name': 'X-Forwarded-Proto', 'in': 'header', 'schema': {'type': 'string'}},
    {'name': 'X-Forwarded-Host', 'in': 'header', 'schema': {'type': 'string'}},
    {'name': 'X-Forwarded-Uri', 'in': 'header', 'schema': {'type': 'string'}},
    {'name': 'X-Forwarded-Method', 'in': 'header', 'schema': {'type': 'string'}}]) for m in ('get', 'head')},
 P+'/auth/sign-in/second-factor': {'post': op('routes/auth.PostSignInSecondFactor',
   "Complete a sign-in that answered 403 second-factor-required: the mfa-token and a TOTP code, a recovery code or a passkey assertion. Answers like POST /auth/sign-in",
   {**ok('200', ref('AuthPostSignInResponse')), **ok('303', description='A form with ret-url: redirected there, with the jwt cookie')},
   request=body(ref('AuthPostSignInSecondFactorRequest'), ref('FormDataAuthPostSignInSecondFactorRequest')))},
 P+'/auth/mfa/totp': {
   'post': op('routes/auth.PostTotp', 'Start a TOTP enrolment (a sign-in session only; the password again): the secret, pending until confirmed',
     ok('200', ref('AuthPostTotpResponse')), STD, None, body(ref('AuthMfaPasswordRequest'))),
   'delete': op('routes/auth.DeleteTotp', 'Turn TOTP off (a sign-in session only; the password and a code or a recovery code); its recovery codes go too',
     ok('204', description='No Content'), STD, None, body(ref('AuthDeleteTotpRequest')))},
 P+'/auth/mfa/totp/confirm': {'post': op('routes/auth.PostTotpConfirm', 'Turn TOTP on with a code of the pending secret (a sign-in session only): the ten recovery codes',
   ok('200', ref('AuthRecoveryCodesResponse')), STD, None, body(ref('AuthPostTotpConfirmRequest')))},
 P+'/auth/mfa/recovery-codes': {'post': op('routes/auth.PostRecoveryCodes', 'Replace every recovery code with ten new ones (a sign-in session only; the password again)',
   ok('200', ref('AuthRecoveryCodesResponse')), STD, None, body(ref('AuthMfaPasswordRequest')))},
 P+'/auth/passkey/register/start': {'post': op('routes/auth.PostPasskeyRegisterStart',
   'Start adding a passkey: re-checks the password; only a session made by signing in (409 without public_url)',
   ok('200', ref('AuthPasskeyCeremony')), STD, None, json_body(ref('AuthPostPasskeyRegisterStartRequest'), False))},
 P+'/auth/passkey/register/finish': {'post': op('routes/auth.PostPasskeyRegisterFinish',
   'Finish adding a passkey with the authenticator\'s answer; only a session made by signing in',
   ok('201', ref('AuthPasskey'), 'Created'), STD, None, json_body(ref('AuthPostPasskeyRegisterFinishRequest')))},
 P+'/auth/passkey': {'get': op('routes/auth.GetPasskeys', 'List the caller\'s passkeys, oldest first',
   ok('200', ref('AuthGetPasskeysResponse')), STD)},
 P+'/auth/passkey/{passkey-id}': {'delete': op('routes/auth.DeletePasskey',
   'Remove one of the caller\'s passkeys; only a session made by signing in, with the password again',
   ok('204', description='No Content'), STD, [passkey_id], json_body(ref('AuthMfaPasswordRequest'), False))},
 P+'/auth/passkey/sign-in/start': {'post': op('routes/auth.PostPasskeySignInStart',
   'Start a passwordless sign-in with a discoverable passkey (user verification required)',
   ok('200', ref('AuthPasskeyCeremony')), None, None, json_body(ref('AuthPostPasskeySignInStartRequest'), False))},
 P+'/auth/passkey/sign-in/finish': {'post': op('routes/auth.PostPasskeySignInFinish',
   'Finish a passwordless sign-in: answers exactly as POST /auth/sign-in, with the jwt cookie',
   ok('200', ref('AuthPostSignInResponse')), None, None, json_body(ref('AuthPostPasskeySignInFinishRequest')))},
 P+'/auth/oauth/{provider}/start': {'get': page_op('routes/auth.GetOAuthBrowserStart',
   'Browser sign-in with a provider (API.md section 11): 302 to its authorization endpoint with state, nonce and a PKCE S256 challenge; sets the short-lived browser-binding cookie',
   {'302': {'description': 'Redirected to the provider', 'headers': {
     'Location': {'schema': {'type': 'string', 'format': 'uri'}},
     'Set-Cookie': {'schema': {'type': 'string'}, 'description': 'latchkey-oauth (__Host-latchkey-oauth under https): HttpOnly, SameSite=Lax, 10 minutes'}}},
    '303': {'description': 'Already signed in: sent on to ret-url, else /account'}},
   [oauth_provider, {'name': 'ret-url', 'in': 'query', 'schema': {'type': 'string'},
     'description': 'Where to go once signed in: a local path or a URL on an allowed return origin.'}])},
 P+'/auth/oauth/{provider}/callback': {'get': page_op('routes/auth.GetOAuthBrowserCallback',
   'Where the provider sends the browser back: checks the state, its browser and iss, exchanges the code, signs in; every failure is the sign-in page, in words',
   {'303': {'description': 'Signed in: the jwt cookie set, redirected to ret-url, else /account'},
    '200': {'description': 'The account holds a second factor: the second-factor page', 'content': {'text/html': {'schema': HTML}}}},
   [oauth_provider] + [{'name': n, 'in': 'query', 'schema': {'type': 'string'}}
     for n in ['code', 'state', 'iss', 'error', 'error_description']])},
 P+'/openapi.json': {'get': op('routes/openapi.GetDocument', 'This document', ok('200', {'type': 'object'}), None, tags=('Health',))},
}
security_schemes = copy.deepcopy(vendor['components']['securitySchemes'])
security_schemes['jwt']['bearerFormat'] = 'PASETO v4.public'
security_schemes['jwt']['description'] = 'Signed token (Header): PASETO v4.public, Ed25519; keys at /auth/keys.'
security_schemes['jwt-token']['description'] = 'Signed token (query ?jwt=): PASETO v4.public.'
security_schemes['jwt-cookie']['description'] = 'Signed token (cookie jwt): PASETO v4.public.'
document = {
 'openapi': '3.1.0',
 'info': {'title': 'Latchkey', 'version': '0.1.0',
   'description': "Probe.dev's Auth API as Latchkey serves it. Signed tokens are PASETO v4.public (the field keeps the vendor's name jwt-token). GET /user/current and GET /user/{user-id} answer 401 without a valid credential."},
 'paths': paths,
 'components': {'schemas': dict(sorted(schemas.items())), 'securitySchemes': security_schemes},
 'tags': [{'name': 'Auth'}, {'name': 'User'}, {'name': 'Health'}],
}
json.dump(document, open(os.path.join(ROOT, 'src', 'http', 'openapi.json'), 'w'), indent=1, sort_keys=False)

