// Matching: suggestions with their evidence and score (Confirm / Reject), the records
// nothing matched (link one by hand), what matched by key or automatically, and the
// admins' decisions.

import { ApiError, allActions, decide, get, tenantPath } from "../api.js";
import { announce, h, notice, recordName, replace, table } from "../dom.js";
import { progressView } from "../runs.js";

const percent = (score) => (typeof score === "number" ? `${Math.round(score * 100)}%` : "—");

function sideName(decision, side, names) {
  const record = decision[side] || decision[`${side}_record`];
  const named = decision[`${side}_name`] || recordName(record);
  const id = decision[`${side}_id`];
  return named || names.get(id) || id || "—";
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
      ? h("p", {}, h("strong", {}, "Other candidates: "), decision.alternatives.map((a) => `${a.target_id || a} ${percent(a.score)}`).join(", "))
      : null,
  );
}

export async function render(main, { session: current }) {
  const status = h("div", { id: "match-status", "aria-live": "polite" });
  const body = h("div", { id: "matching-body" });
  const decided = [];

  async function load() {
    const [runs, decisions] = await Promise.all([
      get(tenantPath("/runs"), { limit: 1 }).then((b) => b.runs),
      get(tenantPath("/matches")).then((b) => b.decisions),
    ]);
    const run = runs[0];
    const names = new Map();
    let manual = [];
    if (run) {
      const actions = (await Promise.all([allActions(run.run_id, { entity: "users" }), allActions(run.run_id, { entity: "classes" })])).flat();
      for (const a of actions) if (a.record) names.set(a.source_id, recordName(a.record));
      manual = actions.filter((a) => a.tier === "manual");
    }
    const suggested = decisions.filter((d) => d.tier === "suggested");
    const unmatched = decisions.filter((d) => d.tier === "unmatched");
    const automatic = decisions.filter((d) => d.tier === "key" || d.tier === "auto");

    async function act(kind, payload, label) {
      replace(status, h("p", {}, `${label}…`));
      try {
        await decide(tenantPath(`/matches/${kind}`), payload, null, (r) => replace(status, progressView(r)));
        decided.push(`${label} (by you, just now)`);
        replace(status, notice("ok", `${label}: done.`));
        announce(`${label}: done.`);
        await load();
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) replace(status, notice("error", `${label} failed: ${error.message}`));
      }
    }

    const suggestionCards = suggested.map((d) => {
      const source = sideName(d, "source", names);
      const target = sideName(d, "target", names);
      return h(
        "article",
        { class: "card suggestion", "aria-labelledby": `s-${d.source_id}`, dataset: { source: d.source_id } },
        h("h3", { id: `s-${d.source_id}` }, `${source} → app record ${target}`),
        h("p", {}, `Score ${percent(d.score)}`, typeof d.runner_up === "number" && d.runner_up > 0 ? `, next best ${percent(d.runner_up)}` : "", ` · ${d.entity}`),
        evidence(d),
        current.mayWrite
          ? h(
              "div",
              { class: "actions" },
              h("button", { type: "button", class: "primary", "aria-label": `Confirm ${source} as ${target}`, onclick: () => act("confirm", { entity: d.entity, source_id: d.source_id }, `Confirmed ${source} as ${target}`) }, "Confirm"),
              h("button", { type: "button", class: "danger", "aria-label": `Reject ${source} as ${target}`, onclick: () => act("reject", { entity: d.entity, source_id: d.source_id, target_id: d.target_id }, `Rejected ${source} as ${target}`) }, "Reject"),
            )
          : null,
      );
    });

    const linkForm = (d) => {
      if (!current.mayWrite) return "—";
      const id = `link-${d.entity}-${d.source_id}`;
      const input = h("input", { id, name: "target_id", size: "12", autocomplete: "off" });
      return h(
        "form",
        {
          class: "inline",
          onsubmit: (event) => {
            event.preventDefault();
            if (input.value.trim()) act("link", { entity: d.entity, source_id: d.source_id, target_id: input.value.trim() }, `Linked ${sideName(d, "source", names)} to ${input.value.trim()}`);
          },
        },
        h("label", { for: id, class: "visually-hidden" }, `App id for ${sideName(d, "source", names)}`),
        input,
        h("button", { type: "submit" }, "Link"),
      );
    };

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
        h("p", { class: "notice info" }, "The API does not serve key proposals yet: run ", h("code", {}, "rostersync keys"), " to see and confirm which source identifier matches which app identifier."),
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
        h("p", { class: "help" }, "Nothing in the app matched these: they are created as new unless you link them to an app record."),
        table(
          "Unmatched source records",
          [
            { label: "Record", cell: (d) => sideName(d, "source", names) },
            { label: "Entity", cell: (d) => d.entity },
            { label: "Best score", cell: (d) => percent(d.score) },
            { label: "Link to an app id", cell: linkForm },
          ],
          unmatched,
          { empty: "Every record matched.", id: "unmatched-table" },
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "decisions-heading" },
        h("h2", { id: "decisions-heading" }, "Decisions"),
        table(
          "Links an admin decided",
          [
            { label: "Record", cell: (a) => recordName(a.record, a.source_id) },
            { label: "Entity", cell: (a) => a.entity },
            { label: "App id", cell: (a) => a.target_id || "—" },
          ],
          manual,
          { empty: "No admin decision in this run.", id: "decisions-table" },
        ),
        decided.length ? h("ul", { "aria-label": "Decided here" }, decided.map((d) => h("li", {}, d))) : null,
      ),
      h(
        "details",
        {},
        h("summary", {}, `Matched by key or automatically (${automatic.length})`),
        table(
          "Automatic matches",
          [
            { label: "Record", cell: (d) => sideName(d, "source", names) },
            { label: "App id", cell: (d) => d.target_id },
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
