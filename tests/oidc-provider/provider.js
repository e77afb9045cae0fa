// A real OpenID provider for Latchkey's browser OAuth tests, run with node by
// tests/it/browser_oauth.rs: the oidc-provider package on 127.0.0.1 (a port of its own),
// with one static client (client_secret_basic, PKCE required), one account whose email and
// email_verified come from the command line, and the package's development login and
// consent pages. It prints `listening <issuer>` once it answers.
//
// node provider.js CLIENT_ID CLIENT_SECRET REDIRECT_URI EMAIL EMAIL_VERIFIED
import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri, email, emailVerified] = process.argv.slice(2);
if (!emailVerified) {
  console.error('usage: node provider.js CLIENT_ID CLIENT_SECRET REDIRECT_URI EMAIL EMAIL_VERIFIED');
  process.exit(2);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    // Every login name signs in the one account; its claims are the command line's.
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, email, email_verified: emailVerified === 'true' };
        },
      };
    },
    cookies: { keys: ['latchkey-test-oidc-provider-cookie-key'] },
  });
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});

// A test that stopped reading must not end the provider by a failed write.
process.stdout.on('error', () => {});

// The test ends the process by closing its standard input (or killing it).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
