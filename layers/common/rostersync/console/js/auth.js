// Signing in through Cognito's hosted UI (on AWS): the authorization code flow with PKCE.
// config.json (written beside the pages when they are published) names the hosted UI;
// locally it is empty and the console signs in with a pasted token or a sign-in link.

import { signIn } from "./api.js";

const PENDING = "rostersync.pkce";
const MESSAGE = "rostersync.signin-message";

let loaded = null;

/** The console's config.json (``{}`` when there is none). */
export function consoleConfig() {
  loaded ||= fetch("config.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}));
  return loaded;
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const random = (n) => base64url(crypto.getRandomValues(new Uint8Array(n)));

/** Go to the hosted UI; it comes back to the console with ?code=...&state=... */
export async function startHostedSignIn(cognito) {
  const verifier = random(48);
  const state = random(16);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const url = new URL(`https://${cognito.domain}/oauth2/authorize`);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: cognito.client_id,
    redirect_uri: cognito.redirect_uri,
    scope: "openid email",
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

/** Back from the hosted UI: trade the code for the ID token. False if this is not a return. */
export async function finishHostedSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  // The code is used once: out of the address bar and the history.
  window.history.replaceState(null, "", `${location.pathname}#/status`);
  const cognito = (await consoleConfig()).cognito;
  if (params.has("error") || !cognito || !pending || pending.state !== params.get("state")) {
    sessionStorage.setItem(MESSAGE, "The sign-in did not complete. Try again.");
    return true;
  }
  try {
    const response = await fetch(`https://${cognito.domain}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: cognito.client_id,
        code: params.get("code"),
        redirect_uri: cognito.redirect_uri,
        code_verifier: pending.verifier,
      }).toString(),
    });
    const body = await response.json();
    if (!response.ok || !body.id_token || !signIn(body.id_token)) throw new Error("no token");
  } catch {
    sessionStorage.setItem(MESSAGE, "The sign-in service did not give a token. Try again.");
  }
  return true;
}
