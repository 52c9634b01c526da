// Configure: every tenant setting, as a form built from the settings schema in the API's
// own OpenAPI document (so a new setting appears here without a change), with the API's
// validation messages next to the field they name. And how to deliver a bundle.

import { ApiError, call, get, openapiDocument, post, tenantPath } from "../api.js";
import { announce, h, notice, replace, showValue, table, when } from "../dom.js";
import { connectSection, sftpSection } from "./connect.js";

const HELP = {
  items_to_sync: "The kinds of record the sync keeps in step.",
  changes_to_sync: "Which changes the sync may make.",
  blank_values: "ignore: a blank value in the bundle erases nothing; replace: blanks clear fields.",
  ignore_class_renames: "Keep the app's class titles when the SIS renames a class.",
  overwrite_app_contact_edits: "Let the sync overwrite email, phone and SMS edited in the app.",
  hold_unmatched: "Hold records nothing matched for an admin to link, instead of creating them.",
  auto_commit: "Commit a run without review (unless a hold threshold trips).",
  announce_unchanged_runs: "Send run.committed for a run that changed nothing too (otherwise it is silent).",
  schedule: "A daily sync of the newest complete bundle in the inbox.",
  "schedule.time": "24-hour HH:MM.",
  "schedule.timezone": "An IANA time zone, such as America/Chicago.",
  "hold.archive_share": "Hold a run archiving more than this share (0–1) of an entity's active records.",
  "hold.change_share": "Hold a run changing more than this share (0–1); empty for no limit.",
  "hold.min_bundle_ratio": "Hold a bundle with fewer rows than this share of the last committed one.",
  "hold.apply_safe_changes": "While held, let adds and updates through; only archives wait.",
  "schools.include": "Source ids of the schools to sync, separated by commas (empty: all).",
  "schools.mapping": "A JSON object: source school id → app school id.",
  "notifications.emails": "Addresses, separated by commas.",
  class_date_window_days: "Largest gap, in days, between a source class's term dates and an app class's.",
};

function resolve(schema, root) {
  let node = schema || {};
  while (node.$ref) node = root[node.$ref.split("/").pop()] || {};
  return node;
}

function nonNull(schema, root) {
  const options = schema.anyOf || schema.oneOf;
  if (!options) return { inner: resolve(schema, root), nullable: false };
  const rest = options.filter((o) => o.type !== "null");
  return { inner: resolve(rest[0], root), nullable: rest.length < options.length };
}

const fieldId = (path) => `f-${path.replaceAll(".", "-")}`;
const titleOf = (name, schema) =>
  schema.title || name.replaceAll("_", " ").replace(/\b[a-z]/g, (c) => c.toUpperCase());

/** A form part for one setting: ``{node, read(), error(message)}``. */
function control(path, name, schema, value, root) {
  const { inner, nullable } = nonNull(resolve(schema, root), root);
  // A part with no value yet (a schedule not set) starts from the schema's defaults.
  if (value === undefined) value = schema.default ?? inner.default;
  const id = fieldId(path);
  const errorEl = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const help = HELP[path] ? h("p", { class: "help", id: `${id}-help` }, HELP[path]) : null;
  const describedBy = [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" ");
  const label = titleOf(name, schema);
  let node;
  let read;
  let input = null;

  if (inner.type === "object" && inner.properties) {
    const parts = Object.entries(inner.properties).map(([child, childSchema]) =>
      control(`${path}.${child}`, child, childSchema, value?.[child], root),
    );
    const inside = h("div", { class: "fields" }, parts.map((p) => p.node));
    if (nullable) {
      input = h("input", { type: "checkbox", id, checked: value !== null && value !== undefined, "aria-describedby": describedBy });
      const sync = () => {
        inside.hidden = !input.checked;
      };
      input.addEventListener("change", sync);
      sync();
      node = h("fieldset", { class: "group", dataset: { field: path } }, h("legend", {}, label), help, h("label", { class: "choice" }, input, ` Use a ${label.toLowerCase()}`), inside, errorEl);
      read = () => (input.checked ? Object.fromEntries(parts.map((p, i) => [Object.keys(inner.properties)[i], p.read()])) : null);
    } else {
      node = h("fieldset", { class: "group", dataset: { field: path } }, h("legend", {}, label), help, inside, errorEl);
      read = () => Object.fromEntries(parts.map((p, i) => [Object.keys(inner.properties)[i], p.read()]));
    }
    return { node, read, path, focus: () => (input || node.querySelector("input,select,textarea"))?.focus(), errorEl, input };
  }

  const items = inner.type === "array" ? resolve(inner.items, root) : null;
  if (items?.enum) {
    const boxes = items.enum.map((option) =>
      h("input", { type: "checkbox", name: path, value: option, checked: (value || []).includes(option) }),
    );
    node = h(
      "fieldset",
      { class: "group field", dataset: { field: path }, "aria-describedby": describedBy },
      h("legend", {}, label),
      help,
      h("div", { class: "choices" }, boxes.map((box, i) => h("label", { class: "choice" }, box, ` ${items.enum[i]}`))),
      errorEl,
    );
    read = () => boxes.filter((b) => b.checked).map((b) => b.value);
    return { node, read, path, focus: () => boxes[0]?.focus(), errorEl, input: boxes[0] };
  }

  if (inner.type === "boolean") {
    input = h("input", { type: "checkbox", id, checked: Boolean(value), "aria-describedby": describedBy });
    read = () => input.checked;
    node = h("div", { class: "field", dataset: { field: path } }, h("label", { class: "choice", for: id }, input, ` ${label}`), help, errorEl);
  } else if (inner.enum) {
    input = h("select", { id, "aria-describedby": describedBy }, nullable ? h("option", { value: "" }, "(none)") : null, inner.enum.map((o) => h("option", { value: o, selected: o === value }, o)));
    read = () => (input.value === "" && nullable ? null : input.value);
  } else if (inner.type === "integer" || inner.type === "number") {
    input = h("input", {
      type: "number",
      id,
      value: value ?? "",
      step: inner.type === "integer" ? "1" : "any",
      min: inner.minimum ?? inner.exclusiveMinimum,
      max: inner.maximum ?? inner.exclusiveMaximum,
      inputmode: "decimal",
      "aria-describedby": describedBy,
    });
    read = () => {
      if (input.value.trim() === "") return nullable ? null : undefined;
      return Number(input.value);
    };
  } else if (inner.type === "array") {
    input = h("input", { id, value: (value || []).join(", "), "aria-describedby": describedBy, autocomplete: "off" });
    read = () => input.value.split(",").map((s) => s.trim()).filter(Boolean);
  } else if (inner.type === "object") {
    input = h("textarea", { id, rows: "3", "aria-describedby": describedBy }, JSON.stringify(value ?? {}, null, 1));
    read = () => {
      try {
        return JSON.parse(input.value || "{}");
      } catch {
        throw new FieldProblem(path, "must be a JSON object, such as {\"a\": \"b\"}");
      }
    };
  } else {
    input = h("input", { id, value: value ?? "", "aria-describedby": describedBy, autocomplete: "off" });
    read = () => (input.value === "" && nullable ? null : input.value);
  }
  if (!node) node = h("div", { class: "field", dataset: { field: path } }, h("label", { for: id }, label), input, help, errorEl);
  return { node, read, path, focus: () => input.focus(), errorEl, input };
}

class FieldProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** Upload a bundle (a zip) from this computer, then sync it: review first, or not. */
function uploadSection(current) {
  const result = h("div", { id: "upload-result", "aria-live": "polite" });
  if (!current.mayWrite) return h("p", { class: "help" }, "Viewers cannot upload bundles.");
  const file = h("input", { type: "file", id: "bundle-file", name: "bundle", accept: ".zip,application/zip", required: true, "aria-describedby": "bundle-help" });
  const review = h("input", { type: "checkbox", id: "upload-review", checked: true });
  const form = h(
    "form",
    {
      id: "upload-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = file.files?.[0];
        if (!chosen) {
          replace(result, notice("error", "Choose the bundle's zip file first."));
          file.focus();
          return;
        }
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        replace(result, h("p", {}, `Uploading ${chosen.name}…`));
        try {
          const stored = (await call(tenantPath("/uploads"), { method: "POST", file: chosen })).body;
          const started = await post(tenantPath("/runs"), { source_key: stored.source_key, review: review.checked });
          announce(`Uploaded ${chosen.name}; run ${started.body.run_id} started.`);
          replace(
            result,
            notice("ok", `Uploaded ${chosen.name} (${stored.files.join(", ")}). Run ${started.body.run_id} started: `, h("a", { href: `#/runs/${started.body.run_id}`, id: "uploaded-run" }, "follow it")),
          );
        } catch (error) {
          if (error instanceof ApiError && error.status === 409 && error.runId) {
            replace(result, notice("warn", "The bundle is stored, but a run is already going: ", h("a", { href: `#/runs/${error.runId}` }, error.runId), ". Sync again when it ends."));
          } else if (!(error instanceof ApiError && error.status === 401)) {
            replace(result, notice("error", `The upload failed: ${error.message}`));
          }
        } finally {
          button.disabled = false;
        }
      },
    },
    h("div", { class: "field" }, h("label", { for: "bundle-file" }, "Bundle (zip)"), file, h("p", { class: "help", id: "bundle-help" }, "One zip holding manifest.csv and the OneRoster CSV files it lists; up to 6 MB here (larger ones through SFTP).")),
    h("label", { class: "choice", for: "upload-review" }, review, " Stop for review before committing"),
    h("button", { type: "submit", class: "primary" }, "Upload and sync"),
    result,
  );
  return form;
}

async function historySection() {
  const history = (await get(tenantPath("/settings/history"))).history;
  const rows = history.flatMap((entry) => entry.changes.map((change) => ({ ...change, at: entry.changed_at, by: entry.changed_by })));
  return h(
    "section",
    { "aria-labelledby": "settings-history-heading" },
    h("h2", { id: "settings-history-heading" }, "Settings history"),
    table(
      "Every change, newest first",
      [
        { label: "Setting", cell: (r) => r.field },
        { label: "Before → after", cell: (r) => h("span", {}, h("del", {}, showValue(r.old)), " → ", h("ins", {}, showValue(r.new))) },
        { label: "Who", cell: (r) => r.by || "—" },
        { label: "When", cell: (r) => when(r.at) },
      ],
      rows,
      { empty: "The settings have not been changed: they are the defaults.", id: "settings-history" },
    ),
  );
}

export async function render(main, { session: current }) {
  const [document_, view, connect, sftp] = await Promise.all([
    openapiDocument(),
    get(tenantPath("/settings")),
    connectSection(current),
    sftpSection(current),
  ]);
  const history = h("div", { id: "settings-history-area" });
  const drawHistory = () =>
    historySection()
      .then((section) => replace(history, section))
      .catch((error) => error?.status !== 401 && replace(history, notice("error", error.message)));
  const root = document_.components?.schemas || {};
  const schema = resolve(root.TenantSettings || { $ref: "TenantSettings" }, root);
  const summary = h("div", { id: "settings-summary", tabindex: "-1" });

  const parts = Object.entries(schema.properties || {}).map(([name, s]) => control(name, name, s, view.settings[name], root));

  function clearErrors() {
    for (const el of form.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    replace(summary);
  }

  function showErrors(errors) {
    const containers = [...form.querySelectorAll("[data-field]")];
    const links = [];
    for (const { field, message } of errors) {
      const owner = containers
        .filter((c) => field === c.dataset.field || field.startsWith(`${c.dataset.field}.`))
        .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
      if (!owner) {
        links.push(h("li", {}, `${field}: ${message}`));
        continue;
      }
      const errorEl = [...owner.querySelectorAll(".field-error")].pop();
      errorEl.hidden = false;
      errorEl.textContent = errorEl.textContent ? `${errorEl.textContent}; ${message}` : message;
      const target = owner.matches("input,select,textarea") ? owner : owner.querySelector("input,select,textarea");
      target?.setAttribute("aria-invalid", "true");
      links.push(h("li", {}, h("a", { href: `#${target?.id || ""}`, onclick: (e) => { e.preventDefault(); target?.focus(); } }, `${field}: ${message}`)));
    }
    replace(summary, notice("error", h("p", {}, `${errors.length} setting${errors.length === 1 ? "" : "s"} need${errors.length === 1 ? "s" : ""} attention:`), h("ul", {}, links)));
    summary.focus();
  }

  const form = h(
    "form",
    {
      id: "settings-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        clearErrors();
        let documentValue;
        try {
          documentValue = Object.fromEntries(parts.map((p) => [p.path, p.read()]));
        } catch (problem) {
          if (problem instanceof FieldProblem) return showErrors([{ field: problem.field, message: problem.message }]);
          throw problem;
        }
        try {
          const answer = await call(tenantPath("/settings"), { method: "PUT", body: documentValue, query: { mode: "replace" } });
          const changed = answer.body.changed || [];
          replace(summary, notice("ok", changed.length ? `Saved: ${changed.join(", ")} changed.` : "Saved: nothing changed."));
          announce("Settings saved.");
          drawHistory();
          summary.focus();
        } catch (error) {
          if (error instanceof ApiError && error.fields.length) showErrors(error.fields);
          else if (!(error instanceof ApiError && error.status === 401)) replace(summary, notice("error", error.message));
        }
      },
    },
    h("fieldset", { class: "plain", disabled: !current.mayWrite }, h("legend", { class: "visually-hidden" }, "Settings"), parts.map((p) => p.node)),
    current.mayWrite ? h("button", { type: "submit", class: "primary" }, "Save settings") : h("p", { class: "help" }, "Viewers can read the settings but not change them."),
  );

  replace(
    main,
    h("h1", {}, "Configure"),
    summary,
    connect,
    h(
      "section",
      { "aria-labelledby": "bundle-heading", class: "card" },
      h("h2", { id: "bundle-heading" }, "Deliver a OneRoster bundle"),
      h("h3", {}, "Upload one from this computer"),
      uploadSection(current),
      h("h3", {}, "Or drop it in the SFTP drop box"),
      h(
        "p",
        {},
        "Each SFTP user sees the tenant's inbox as ",
        h("code", {}, "/"),
        ". A complete bundle (a zip, or a folder with manifest.csv and every file it lists) starts a run at once; Sync now and the daily schedule take the newest one.",
      ),
      h("pre", {}, h("code", {}, "sftp -P 2222 USER@HOST\nsftp> put oneroster.zip")),
    ),
    sftp,
    h("section", { "aria-labelledby": "settings-heading" }, h("h2", { id: "settings-heading" }, "Sync settings"), form),
    history,
  );
  await drawHistory();
  return null;
}
