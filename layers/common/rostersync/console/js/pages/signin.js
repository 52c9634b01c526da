// Sign in with a bearer token: pasted here, or carried by a sign-in link's fragment.

import { ApiError, get, session, signIn, signOut, tenantPath } from "../api.js";
import { consoleConfig, startHostedSignIn } from "../auth.js";
import { h, notice, replace } from "../dom.js";

export async function render(main) {
  const message = sessionStorage.getItem("rostersync.signin-message");
  sessionStorage.removeItem("rostersync.signin-message");
  const status = h("div", { id: "signin-status" });
  if (message) status.append(notice("error", message));
  const tokenField = h("textarea", {
    id: "token",
    name: "token",
    rows: "4",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-help",
  });
  const tenantField = h("input", { id: "tenant-field", name: "tenant", autocomplete: "off", "aria-describedby": "tenant-help" });

  async function submit(event) {
    event.preventDefault();
    replace(status);
    if (!signIn(tokenField.value, tenantField.value)) {
      status.append(notice("error", "That is not a token: paste the whole token the command printed."));
      tokenField.focus();
      return;
    }
    const current = session();
    if (!current) {
      status.append(notice("error", "That token has expired. Make a new one."));
      return;
    }
    if (!current.tenant) {
      signOut();
      status.append(notice("error", "A platform token acts on any tenant: name the tenant too."));
      tenantField.focus();
      return;
    }
    try {
      await get(tenantPath(""));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      signOut();
      status.append(notice("error", `The API refused this token: ${error.message}`));
      return;
    }
    location.hash = "#/status";
  }

  const cognito = (await consoleConfig()).cognito;
  const hosted = cognito
    ? h(
        "div",
        { class: "card narrow" },
        h("h2", {}, "With your account"),
        h("button", { type: "button", class: "primary", id: "hosted-sign-in", onclick: () => startHostedSignIn(cognito).catch((e) => replace(status, notice("error", e.message))) }, "Sign in with your account"),
        h("p", { class: "help" }, "You are sent to the sign-in page of your district's account, then back here."),
      )
    : null;
  replace(
    main,
    h("h1", {}, "Sign in"),
    hosted,
    hosted ? h("h2", {}, "Or with a token") : null,
    h(
      "p",
      {},
      "Paste a token, or open the sign-in link that ",
      h("code", {}, "rostersync token --tenant T --role admin --console URL"),
      " prints.",
    ),
    h(
      "form",
      { class: "card narrow", onsubmit: submit, "aria-labelledby": "signin-heading" },
      h("h2", { id: "signin-heading", class: "visually-hidden" }, "Sign-in form"),
      h("label", { for: "token" }, "Token"),
      tokenField,
      h("p", { id: "token-help", class: "help" }, "It stays in this tab only and is forgotten when the tab closes."),
      h("label", { for: "tenant-field" }, "Tenant (platform role only)"),
      tenantField,
      h("p", { id: "tenant-help", class: "help" }, "Admin and viewer tokens name their tenant themselves."),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
      status,
    ),
  );
}
