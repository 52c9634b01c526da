// Configure: connect the tenant to its source (its kind, settings and write-only
// secrets, with the API's validation messages next to the field), and the SFTP users of
// the drop box (list; add with a public key or a generated password; rotate; remove).
// A secret typed here is sent once and never shown back: the API answers "set" or
// "missing" for each, and a generated SFTP password is shown once, when it is made.

import { ApiError, call, get, post, tenantPath } from "../api.js";
import { announce, facts, h, notice, replace, table, when } from "../dom.js";

const OPTIONAL = "Leave empty for the default.";

/** The kinds a tenant can connect, the settings the form offers and their secrets. */
export const KINDS = [
  {
    kind: "oneroster_csv",
    label: "OneRoster files (upload or SFTP)",
    help: "Runs sync the newest complete bundle uploaded here or dropped by SFTP.",
    fields: [],
    secrets: [],
  },
  {
    kind: "clever",
    label: "Clever",
    help: "The district's Clever API, read with its district token.",
    fields: [{ name: "base_url", label: "API address", help: `https://api.clever.com. ${OPTIONAL}` }],
    secrets: [{ name: "token", label: "District token" }],
  },
  {
    kind: "oneroster_rest",
    label: "OneRoster REST / ClassLink",
    help: "A OneRoster 1.1 or 1.2 REST API (ClassLink Roster Server and others).",
    fields: [
      { name: "base_url", label: "API address", help: "Up to and including ims/oneroster/v1p1 (or v1p2)." },
      { name: "version", label: "OneRoster version", options: ["1.1", "1.2"] },
      { name: "auth", label: "Authentication", options: ["oauth2", "oauth1-hmac-sha256", "oauth1-hmac-sha1", "bearer"] },
      { name: "client_id", label: "Client id", help: "Not needed with bearer authentication." },
      { name: "token_url", label: "Token address", help: `OAuth 2 only. ${OPTIONAL}` },
    ],
    secrets: [{ name: "client_secret", label: "Client secret", help: "The bearer token, with bearer authentication." }],
  },
  {
    kind: "wonde",
    label: "Wonde",
    help: "One school's data through Wonde.",
    fields: [
      { name: "school_id", label: "Wonde school id" },
      { name: "base_url", label: "API address", help: `https://api.wonde.com. ${OPTIONAL}` },
    ],
    secrets: [{ name: "token", label: "API token" }],
  },
  {
    kind: "assembly",
    label: "Assembly",
    help: "A school's MIS data through the Assembly platform.",
    fields: [
      { name: "client_id", label: "Client id", help: `For refreshing the access token. ${OPTIONAL}` },
      { name: "base_url", label: "API address", help: `https://api.assembly.education. ${OPTIONAL}` },
    ],
    secrets: [{ name: "access_token", label: "Access token" }],
  },
];

const kindOf = (name) => KINDS.find((k) => k.kind === name);
const labelOf = (name) => kindOf(name)?.label || name;
const quietly = (error, area) => {
  if (!(error instanceof ApiError && error.status === 401)) replace(area, notice("error", error.message));
};
/** A field name from the API without the "body." a request validation error adds. */
const bare = (field) => String(field || "").replace(/^body\./, "");

function fieldPart(id, label, input, help, key) {
  const errorEl = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const helpEl = help ? h("p", { class: "help", id: `${id}-help` }, help) : null;
  input.setAttribute("aria-describedby", [helpEl ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" "));
  const node = h("div", { class: "field", dataset: { field: key } }, h("label", { for: id }, label), input, helpEl, errorEl);
  return { node, input, errorEl, key };
}

function showFieldErrors(parts, summary, errors) {
  const unplaced = [];
  for (const { field, message } of errors) {
    const name = bare(field);
    const part = parts.find((p) => name === p.key || name.startsWith(`${p.key}.`)) || parts.find((p) => p.key === `settings.${name.split(".")[0]}`);
    if (!part) {
      unplaced.push(h("li", {}, `${name}: ${message}`));
      continue;
    }
    part.errorEl.hidden = false;
    part.errorEl.textContent = part.errorEl.textContent ? `${part.errorEl.textContent}; ${message}` : message;
    part.input.setAttribute("aria-invalid", "true");
  }
  const first = parts.find((p) => p.input.getAttribute("aria-invalid"));
  replace(summary, notice("error", h("p", {}, `${errors.length} field${errors.length === 1 ? "" : "s"} need${errors.length === 1 ? "s" : ""} attention.`), unplaced.length ? h("ul", {}, unplaced) : null));
  (first?.input || summary).focus();
}

function clearFieldErrors(parts, summary) {
  for (const part of parts) {
    part.errorEl.hidden = true;
    part.errorEl.textContent = "";
    part.input.removeAttribute("aria-invalid");
  }
  replace(summary);
}

/** What the tenant is connected to, as the API shows it (secrets only "set" or "missing"). */
function connectedView(source) {
  const secrets = Object.entries(source.secrets || {});
  const settings = Object.entries(source.settings || {}).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length));
  return h(
    "div",
    { id: "connected-source" },
    facts([
      ["Source", labelOf(source.kind)],
      ["Connected", source.connected_at ? `${when(source.connected_at)} by ${source.connected_by || "—"}` : "Not yet (bundles from the inbox)"],
      ...settings.map(([name, value]) => [name, Array.isArray(value) ? value.join(", ") : String(value)]),
      ...secrets.map(([name, state]) => [`Secret ${name}`, state === "set" ? "stored" : "missing"]),
    ]),
    source.check ? notice(source.check.ok ? "ok" : "warn", `Checked with the source: ${source.check.message}`) : null,
  );
}

/** The "Connect a source" card. */
export async function connectSection(current) {
  const shown = h("div", { id: "connected-source-area", "aria-live": "polite" });
  const summary = h("div", { id: "connect-summary", tabindex: "-1" });
  const fieldsArea = h("div", { id: "connect-fields" });
  let source = await get(tenantPath("/source"));
  replace(shown, connectedView(source));

  const kind = h("select", { id: "connect-kind" }, KINDS.map((k) => h("option", { value: k.kind, selected: k.kind === source.kind }, k.label)));
  const kindPart = fieldPart("connect-kind", "Source", kind, null, "kind");
  const check = h("input", { type: "checkbox", id: "connect-check", checked: true });
  const checkChoice = h("label", { class: "choice", for: "connect-check" }, check, " Try the secrets with the source now");
  let parts = [];

  function drawFields() {
    const chosen = kindOf(kind.value);
    const same = source.kind === chosen.kind;
    const settingParts = chosen.fields.map((f) => {
      const id = `connect-${f.name.replaceAll("_", "-")}`;
      const value = same ? source.settings?.[f.name] : undefined;
      const input = f.options
        ? h("select", { id }, f.options.map((o) => h("option", { value: o, selected: o === value }, o)))
        : h("input", { id, value: value ?? "", autocomplete: "off", spellcheck: "false" });
      return { ...fieldPart(id, f.label, input, f.help, `settings.${f.name}`), name: f.name, secret: false };
    });
    const secretParts = chosen.secrets.map((s) => {
      const id = `connect-secret-${s.name.replaceAll("_", "-")}`;
      const stored = same && source.secrets?.[s.name] === "set";
      const input = h("input", { id, type: "password", autocomplete: "new-password", spellcheck: "false" });
      const help = [s.help, stored ? "One is stored: leave empty to keep it." : "Required: none is stored yet.", "Never shown again once saved."].filter(Boolean).join(" ");
      return { ...fieldPart(id, s.label, input, help, `secrets.${s.name}`), name: s.name, secret: true };
    });
    parts = [kindPart, ...settingParts, ...secretParts];
    checkChoice.hidden = !chosen.secrets.length;
    replace(fieldsArea, h("p", { class: "help", id: "connect-kind-about" }, chosen.help), settingParts.map((p) => p.node), secretParts.map((p) => p.node));
  }
  kind.addEventListener("change", () => {
    clearFieldErrors(parts, summary);
    drawFields();
  });
  drawFields();

  const form = h(
    "form",
    {
      id: "connect-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        clearFieldErrors(parts, summary);
        const settings = {};
        const secrets = {};
        for (const part of parts.slice(1)) {
          const value = part.input.value.trim();
          if (!value) continue;
          (part.secret ? secrets : settings)[part.name] = value;
        }
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        try {
          const answer = await call(tenantPath("/source"), { method: "PUT", body: { kind: kind.value, settings, secrets, check: check.checked } });
          source = answer.body;
          for (const part of parts) if (part.secret) part.input.value = "";
          replace(shown, connectedView(source));
          replace(summary, notice("ok", `Connected to ${labelOf(source.kind)}.`));
          announce(`Connected to ${labelOf(source.kind)}.`);
          drawFields();
        } catch (error) {
          if (error instanceof ApiError && error.fields.length) showFieldErrors(parts, summary, error.fields);
          else quietly(error, summary);
        } finally {
          button.disabled = false;
        }
      },
    },
    h(
      "fieldset",
      { class: "plain", disabled: !current.mayWrite },
      h("legend", { class: "visually-hidden" }, "Connect a source"),
      kindPart.node,
      fieldsArea,
      checkChoice,
    ),
    current.mayWrite ? h("button", { type: "submit", class: "primary" }, "Connect") : h("p", { class: "help" }, "Viewers can see the source but not change it."),
  );

  return h(
    "section",
    { "aria-labelledby": "connect-heading", class: "card" },
    h("h2", { id: "connect-heading" }, "Connect a source"),
    h("h3", {}, "Connected now"),
    shown,
    h("h3", {}, "Connect"),
    summary,
    form,
  );
}

function loginsText(user) {
  const ways = [];
  if (user.has_password) ways.push("password");
  if (user.public_keys) ways.push(`${user.public_keys} public key${user.public_keys === 1 ? "" : "s"}`);
  return ways.join(", ") || "nothing (add a key or rotate)";
}

/** The "SFTP users" card: the drop box's users of this tenant. */
export async function sftpSection(current) {
  const listArea = h("div", { id: "sftp-users-area" });
  const result = h("div", { id: "sftp-result", "aria-live": "polite", tabindex: "-1" });
  const section = h("section", { "aria-labelledby": "sftp-heading", class: "card" }, h("h2", { id: "sftp-heading" }, "SFTP users"));

  function showPassword(username, password) {
    if (!password) return null;
    return h("p", {}, `Password for ${username}: `, h("code", { id: "sftp-password" }, password), " — copy it now: it is not shown again.");
  }

  async function act(doing, message, onFields = null) {
    replace(result);
    try {
      const answer = await doing();
      replace(result, notice("ok", message(answer.body), showPassword(answer.body.user?.username, answer.body.password)));
      announce(message(answer.body));
      await drawList();
      result.focus();
      return true;
    } catch (error) {
      if (onFields && error instanceof ApiError && error.fields.length) onFields(error.fields);
      else quietly(error, result);
      return false;
    }
  }

  async function drawList() {
    const { users } = await get(tenantPath("/sftp-users"));
    const columns = [
      { label: "User name", cell: (u) => u.username },
      { label: "Logs in with", cell: (u) => loginsText(u) },
    ];
    if (current.mayWrite) {
      columns.push({
        label: "Actions",
        cell: (u) =>
          h(
            "div",
            { class: "actions" },
            h("button", { type: "button", "aria-label": `Rotate the password of ${u.username}`, onclick: () => act(() => post(tenantPath(`/sftp-users/${encodeURIComponent(u.username)}/rotate`), { generate_password: true }), (b) => `A new password for ${b.user.username}.`) }, "Rotate password"),
            h("button", { type: "button", class: "danger", "aria-label": `Remove ${u.username}`, onclick: () => act(() => call(tenantPath(`/sftp-users/${encodeURIComponent(u.username)}`), { method: "DELETE" }), (b) => `SFTP user ${b.username} removed.`) }, "Remove"),
          ),
      });
    }
    replace(listArea, table("The tenant's SFTP users (secrets are never shown)", columns, users, { empty: "No SFTP users yet.", id: "sftp-users" }));
  }

  try {
    await drawList();
  } catch (error) {
    if (error instanceof ApiError && error.status === 501) {
      section.append(notice("warn", "SFTP users are managed by Transfer Family with the stack (infra/), not here."));
      return section;
    }
    throw error;
  }

  const username = h("input", { id: "sftp-username", autocomplete: "off", spellcheck: "false", required: true });
  const key = h("textarea", { id: "sftp-public-key", rows: "2", spellcheck: "false" });
  const generate = h("input", { type: "checkbox", id: "sftp-generate", checked: true });
  const parts = [
    fieldPart("sftp-username", "User name", username, "1–64 of A–Z a–z 0–9 . _ -; unique across every tenant.", "username"),
    fieldPart("sftp-public-key", "Public key", key, "An OpenSSH public key (ssh-ed25519 AAAA…). Optional with a generated password.", "public_key"),
  ];
  const summary = h("div", { id: "sftp-summary", tabindex: "-1" });
  const form = h(
    "form",
    {
      id: "sftp-add-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        clearFieldErrors(parts, summary);
        const body = { username: username.value.trim(), generate_password: generate.checked };
        if (key.value.trim()) body.public_key = key.value.trim();
        const done = await act(
          () => call(tenantPath("/sftp-users"), { method: "POST", body }),
          (b) => `SFTP user ${b.user.username} added.`,
          (fields) => showFieldErrors(parts, summary, fields),
        );
        if (done) {
          username.value = "";
          key.value = "";
        }
      },
    },
    h("h3", {}, "Add a user"),
    summary,
    parts.map((p) => p.node),
    h("label", { class: "choice", for: "sftp-generate" }, generate, " Generate a password"),
    h("button", { type: "submit", class: "primary" }, "Add SFTP user"),
  );
  section.append(
    h("p", {}, "Each user sees this tenant's inbox as ", h("code", {}, "/"), " and nothing else."),
    listArea,
    result,
    current.mayWrite ? form : h("p", { class: "help" }, "Viewers can see the users but not change them."),
  );
  return section;
}
