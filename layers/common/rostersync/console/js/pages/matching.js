// Matching, staff first, then students, guardians and classes: key proposals with their
// overlap (Confirm), suggestions with their evidence and score (Confirm / Reject), the
// records nothing matched (link one by hand), the app's records nothing matched (keep or
// archive), and every decision an admin made, with who and when, and Undo.

import { ApiError, decide, get, tenantPath } from "../api.js";
import { announce, h, notice, recordName, replace, table, when } from "../dom.js";
import { progressView } from "../runs.js";

const percent = (score) => (typeof score === "number" ? `${Math.round(score * 100)}%` : "—");
//: The order the SmartRubric flow takes: staff first (classes connect through them).
const KINDS = [
  ["teacher", "Staff"],
  ["student", "Students"],
  ["guardian", "Guardians"],
  ["class", "Classes"],
];
const KIND_ORDER = Object.fromEntries(KINDS.map(([kind], i) => [kind, i]));

const byKind = (rows) => [...rows].sort((a, b) => (KIND_ORDER[kindOf(a)] ?? 9) - (KIND_ORDER[kindOf(b)] ?? 9));
const kindOf = (row) => row.kind || (row.entity === "classes" ? "class" : "");
const kindLabel = (row) => (KINDS.find(([k]) => k === kindOf(row)) || [null, row.entity])[1];

/** "Ada Lovelace (us-12)", or the id alone when there is no name. */
function named(name, id) {
  if (!id) return "—";
  return name ? `${name} (${id})` : id;
}

/** The same in a table cell: the name, and the id below it in small print. */
function namedCell(name, id) {
  if (!id) return "—";
  if (!name) return h("span", { class: "id" }, id);
  return [h("span", { class: "name" }, name), " ", h("span", { class: "id" }, id)];
}

function evidence(decision) {
  const scores = Object.entries(decision.field_scores || {});
  return h(
    "div",
    { class: "evidence" },
    decision.agreed?.length ? h("p", {}, h("strong", {}, "Agree: "), decision.agreed.join(", ")) : null,
    decision.missing?.length ? h("p", {}, h("strong", {}, "Missing: "), decision.missing.join(", ")) : null,
    decision.notes?.length ? h("p", {}, h("strong", {}, "Notes: "), decision.notes.join("; ")) : null,
    scores.length
      ? h(
          "ul",
          { class: "inline-list", "aria-label": "Score by field" },
          scores.map(([field, score]) => h("li", {}, `${field} ${percent(score)}`)),
        )
      : null,
    decision.alternatives?.length
      ? h("p", {}, h("strong", {}, "Other candidates: "), decision.alternatives.map(([id, score, name]) => `${named(name, id)} ${percent(score)}`).join(", "))
      : null,
  );
}

/** The app's own records no sync has linked (the candidates to link by hand). */
async function appRecordsOf(entity) {
  const items = [];
  for (let offset = 0; offset !== null && offset !== undefined; ) {
    const page = await get(tenantPath(`/directory/${entity}`), { source_system: "app", offset, limit: 1000 });
    items.push(...page.items);
    offset = page.next_offset;
  }
  return items;
}

//: Rows a long list shows until "Show all" is pressed.
const FIRST = 25;

/** A table of the first rows, with a button showing the rest. */
function longTable(caption, columns, rows, options) {
  const holder = h("div", {});
  const draw = (all) => {
    const shown = all ? rows : rows.slice(0, FIRST);
    replace(
      holder,
      table(rows.length > shown.length ? `${caption} (the first ${shown.length} of ${rows.length})` : caption, columns, shown, options),
      rows.length > shown.length
        ? h("button", { type: "button", class: "link", "aria-controls": options.id, onclick: () => draw(true) }, `Show all ${rows.length}`)
        : null,
    );
  };
  draw(false);
  return holder;
}

export async function render(main, { session: current }) {
  const status = h("div", { id: "match-status", "aria-live": "polite" });
  const body = h("div", { id: "matching-body" });

  async function act(path, payload, label, { refresh = true } = {}) {
    replace(status, h("p", {}, `${label}…`));
    try {
      const { answer } = await decide(tenantPath(path), payload, null, (r) => replace(status, progressView(r)));
      const unlinked = (answer.body?.unlinked || []).map((u) => `unlinked ${named(u.source_name, u.source_id)} from ${u.target_id}`);
      const said = [answer.body?.undone, ...unlinked].filter(Boolean).join("; ");
      replace(status, notice("ok", `${label}: done.${said ? ` ${said.charAt(0).toUpperCase()}${said.slice(1)}.` : ""}`));
      announce(`${label}: done.`);
      if (refresh) await load();
      return true;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) replace(status, notice("error", `${label} failed: ${error.message}`));
      return false;
    }
  }

  async function load() {
    const [runs, matches, decisions, keys, appUsers, appClasses] = await Promise.all([
      get(tenantPath("/runs"), { limit: 1 }).then((b) => b.runs),
      get(tenantPath("/matches")).then((b) => b.decisions),
      get(tenantPath("/matches/decisions")).then((b) => b.decisions),
      get(tenantPath("/keys")).catch(() => ({ proposals: [], confirmed: {} })),
      appRecordsOf("users"),
      appRecordsOf("classes"),
    ]);
    const run = runs[0];
    const suggested = byKind(matches.filter((d) => d.tier === "suggested"));
    const unmatched = byKind(matches.filter((d) => d.tier === "unmatched"));
    const automatic = byKind(matches.filter((d) => d.tier === "key" || d.tier === "auto"));
    const held = new Set(matches.filter((d) => d.target_id && d.tier !== "unmatched").map((d) => d.target_id));
    for (const d of decisions) if (d.state === "in effect" && d.target_id && ["manual", "confirmed"].includes(d.decision)) held.add(d.target_id);
    const appRecords = [...appUsers, ...appClasses];
    const waiting = appRecords.filter((r) => !r.adhoc && (r.status || "active") === "active" && !held.has(r.target_id));

    const suggestionCards = suggested.map((d) => {
      const source = named(d.source_name, d.source_id);
      const target = named(d.target_name, d.target_id);
      return h(
        "article",
        { class: "card suggestion", "aria-labelledby": `s-${d.source_id}`, dataset: { source: d.source_id } },
        h("h3", { id: `s-${d.source_id}` }, `${kindLabel(d)}: ${source} → app record ${target}`),
        h("p", {}, `Score ${percent(d.score)}`, typeof d.runner_up === "number" && d.runner_up > 0 ? `, next best ${percent(d.runner_up)}` : ""),
        evidence(d),
        current.mayWrite
          ? h(
              "div",
              { class: "actions" },
              h("button", { type: "button", class: "primary", "aria-label": `Confirm ${source} as ${target}`, onclick: () => act("/matches/confirm", { entity: d.entity, source_id: d.source_id }, `Confirmed ${source} as ${target}`) }, "Confirm"),
              h("button", { type: "button", class: "danger", "aria-label": `Reject ${source} as ${target}`, onclick: () => act("/matches/reject", { entity: d.entity, source_id: d.source_id, target_id: d.target_id }, `Rejected ${source} as ${target}`) }, "Reject"),
            )
          : null,
      );
    });

    const choices = (kind) => {
      const id = `app-records-${kind || "any"}`;
      const list = h(
        "datalist",
        { id },
        appRecords
          .filter((r) => (kind === "class" ? !r.role : !kind || r.role === kind))
          .map((r) => h("option", { value: r.target_id }, recordName(r, r.target_id))),
      );
      return [id, list];
    };

    const linkForm = (d) => {
      if (!current.mayWrite) return "—";
      const id = `link-${d.entity}-${d.source_id}`;
      const [listId, list] = choices(kindOf(d));
      const input = h("input", { id, name: "target_id", size: "14", autocomplete: "off", list: listId, "aria-describedby": "link-help" });
      const replaceBox = h("input", { type: "checkbox", id: `${id}-replace` });
      const source = named(d.source_name, d.source_id);
      return h(
        "form",
        {
          class: "inline",
          onsubmit: (event) => {
            event.preventDefault();
            const target = input.value.trim();
            if (!target) return input.focus();
            act("/matches/link", { entity: d.entity, source_id: d.source_id, target_id: target, replace: replaceBox.checked }, `Linked ${source} to ${target}`);
          },
        },
        h("label", { for: id, class: "visually-hidden" }, `App id for ${source}`),
        input,
        list,
        h("label", { class: "choice small", for: `${id}-replace` }, replaceBox, " replace"),
        h("button", { type: "submit" }, "Link"),
      );
    };

    const keyRows = keys.proposals.map((p) => ({ ...p, spec: `${p.source_field}:${p.app_field}${p.strip_leading_zeros ? ":strip" : ""}` }));
    const inUse = Object.entries(keys.confirmed || {}).filter(([, list]) => list.length);

    replace(
      body,
      h(
        "p",
        { class: "help" },
        run ? `Decisions of the latest run, ${run.run_id} (${run.status}). A decision re-stages a prepared run.` : "No run yet: matching starts with the first sync.",
      ),
      h(
        "section",
        { "aria-labelledby": "keys-heading" },
        h("h2", { id: "keys-heading" }, "Key proposals"),
        h("p", { class: "help" }, "Identifiers the source and the app share: confirming one links every record that agrees on it, before any scoring."),
        inUse.length
          ? h("p", { id: "keys-in-use" }, "In use: ", inUse.map(([kind, list]) => `${kind}s by ${list.join(", ")}`).join("; "), ".")
          : null,
        table(
          "Source identifiers that line up with app identifiers",
          [
            { label: "Kind", cell: (p) => (KINDS.find(([k]) => k === p.kind) || [0, p.kind])[1] },
            { label: "Source ↔ app", cell: (p) => `${p.source_field} ↔ ${p.app_field}${p.strip_leading_zeros ? " (leading zeros stripped)" : ""}` },
            { label: "Shared", cell: (p) => String(p.support) },
            { label: "Overlap", cell: (p) => `${percent(p.source_overlap)} of source, ${percent(p.app_overlap)} of app` },
            { label: "Names agree", cell: (p) => percent(p.agreement) },
            {
              label: "Decision",
              cell: (p) =>
                (keys.confirmed?.[p.kind] || []).includes(p.spec)
                  ? "confirmed"
                  : current.mayWrite
                    ? h("button", { type: "button", class: p.strong ? "primary" : null, "aria-label": `Confirm ${p.kind}s by ${p.source_field} ↔ ${p.app_field}`, onclick: () => act("/keys/confirm", { kind: p.kind, keys: [p.spec] }, `Confirmed ${p.kind}s by ${p.spec}`) }, "Confirm")
                    : p.strong ? "proposed" : "—",
            },
          ],
          keyRows,
          { empty: "No proposal: import the app's records, then sync, to see which identifiers line up.", id: "keys-table" },
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "suggested-heading" },
        h("h2", { id: "suggested-heading" }, `Suggestions to confirm (${suggested.length})`),
        suggestionCards.length ? suggestionCards : h("p", { class: "empty" }, "No suggestion waits for a decision."),
      ),
      h(
        "section",
        { "aria-labelledby": "unmatched-heading" },
        h("h2", { id: "unmatched-heading" }, `Unmatched records (${unmatched.length})`),
        h("p", { class: "help", id: "link-help" }, "Nothing in the app matched these: they are created as new unless you link them to an app record (type a name or an app id). Tick replace to take an app record another record holds."),
        longTable(
          "Unmatched source records",
          [
            { label: "Record", cell: (d) => namedCell(d.source_name, d.source_id) },
            { label: "Kind", cell: (d) => kindLabel(d) },
            { label: "Best score", cell: (d) => percent(d.score) },
            { label: "Link to an app record", cell: linkForm },
          ],
          unmatched,
          { empty: "Every record matched.", id: "unmatched-table" },
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "app-only-heading" },
        h("h2", { id: "app-only-heading" }, `App records nothing matched (${waiting.length})`),
        h("p", { class: "help" }, "Keep one the app needs although the SIS does not have it, or archive it."),
        longTable(
          "App records with no source record",
          [
            { label: "App record", cell: (r) => namedCell(recordName(r), r.target_id) },
            { label: "Kind", cell: (r) => r.role || "class" },
            {
              label: "Decision",
              rowHeader: false,
              cell: (r) =>
                current.mayWrite
                  ? h(
                      "div",
                      { class: "actions" },
                      h("button", { type: "button", "aria-label": `Keep ${recordName(r, r.target_id)}`, onclick: () => act("/matches/adhoc", { entity: r.role ? "users" : "classes", target_id: r.target_id, keep: true }, `Kept ${recordName(r, r.target_id)}`) }, "Keep"),
                      h("button", { type: "button", class: "danger", "aria-label": `Archive ${recordName(r, r.target_id)}`, onclick: () => act("/matches/adhoc", { entity: r.role ? "users" : "classes", target_id: r.target_id, keep: false }, `Archived ${recordName(r, r.target_id)}`) }, "Archive"),
                    )
                  : "—",
            },
          ],
          waiting,
          { empty: "None: every app record is matched, kept or archived.", id: "app-only-table" },
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "decisions-heading" },
        h("h2", { id: "decisions-heading" }, `Decisions (${decisions.length})`),
        h("p", { class: "help" }, "Every decision an admin made, newest first. Undo one to let matching decide again."),
        longTable(
          "Decisions an admin made",
          [
            { label: "Decision", cell: (d) => d.what },
            { label: "Record", cell: (d) => (d.source_id ? namedCell(d.source_name, d.source_id) : "—") },
            { label: "App record", cell: (d) => namedCell(d.target_name, d.target_id) },
            { label: "Who", cell: (d) => d.by || "—" },
            { label: "When", cell: (d) => when(d.at) },
            { label: "State", cell: (d) => h("span", { class: `badge state-${d.state.replace(" ", "-")}` }, d.undone_by ? `${d.state} by ${d.undone_by}` : d.state) },
            {
              label: "Undo",
              rowHeader: false,
              cell: (d) =>
                current.mayWrite && d.state === "in effect"
                  ? h("button", { type: "button", dataset: { decision: d.id }, "aria-label": `Undo: ${d.what}, ${d.source_id ? named(d.source_name, d.source_id) : named(d.target_name, d.target_id)}`, onclick: () => act("/matches/undo", { decision_id: d.id }, `Undid ${d.what}`) }, "Undo")
                  : "—",
            },
          ],
          decisions,
          { empty: "No admin decision yet.", id: "decisions-table" },
        ),
      ),
      h(
        "details",
        {},
        h("summary", {}, `Matched by key or automatically (${automatic.length})`),
        longTable(
          "Automatic matches",
          [
            { label: "Record", cell: (d) => namedCell(d.source_name, d.source_id) },
            { label: "App record", cell: (d) => namedCell(d.target_name, d.target_id) },
            { label: "Kind", cell: (d) => kindLabel(d) },
            { label: "How", cell: (d) => d.tier },
            { label: "Score", cell: (d) => percent(d.score) },
            { label: "Evidence", cell: (d) => (d.agreed || []).join(", ") || "—" },
          ],
          automatic,
          { empty: "None.", id: "automatic-table" },
        ),
      ),
    );
  }

  replace(main, h("h1", {}, "Matching"), status, body);
  await load();
}
