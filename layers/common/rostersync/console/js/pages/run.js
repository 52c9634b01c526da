// One run: its report (counts, hold reasons, row issues, most serious first) and its
// actions by entity and action, with names and field-level before → after. A prepared
// run's actions can be ticked and unticked; an admin commits, discards, approves, undoes.

import { ApiError, allActions, allDirectory, get, isBusy, post, saveFile, settle, tenantPath } from "../api.js";
import {
  ACTIONS,
  ENTITY_NAMES,
  announce,
  duration,
  facts,
  h,
  notice,
  recordName,
  replace,
  showValue,
  statusBadge,
  table,
  when,
} from "../dom.js";
import { decisionButton, holdReasons, progressView } from "../runs.js";

const PAGE = 50;

/** A button saving one of the run's files from the API (every row, not a page). */
function fileButton(runId, name, id) {
  const status = h("span", { class: "help", "aria-live": "polite" });
  const button = h(
    "button",
    {
      type: "button",
      id,
      onclick: async () => {
        button.disabled = true;
        status.textContent = `Preparing ${name}…`;
        try {
          const size = await saveFile(
            tenantPath(`/runs/${runId}/${name}`),
            `${name.replace(".csv", "")}-${runId}.csv`,
            (preparing) => {
              const count = Number(preparing?.actions || 0).toLocaleString("en-US");
              status.textContent = `Writing ${name} (${count} actions) in the background; it downloads when ready…`;
            },
          );
          status.textContent = `${name} saved (${Math.max(1, Math.round(size / 1024))} KB).`;
        } catch (error) {
          if (error?.status !== 401) status.textContent = `${name} could not be saved: ${error.message}`;
        } finally {
          button.disabled = false;
        }
      },
    },
    `Download ${name}`,
  );
  return h("span", { class: "file-button" }, button, " ", status);
}

//: The report's severities, worst first (``issue.severity``), as the page names them.
const SEVERITIES = { blocking: 4, row: 3, field: 2, note: 1 };
const SEVERITY_NAMES = { 4: "Blocking: nothing of it applied", 3: "Row skipped", 2: "Value defaulted or dropped", 1: "Note" };

/** How serious a row issue is: the report's severity, else what was done about it. */
export function severity(issue) {
  if (SEVERITIES[issue.severity]) return SEVERITIES[issue.severity];
  const done = `${issue.action || ""} ${issue.message || ""}`.toLowerCase();
  if (/file_skipped|file skipped|unusable|unreadable/.test(done)) return 4;
  if (/skip|refus|reject|not imported|invalid|failed/.test(done)) return 3;
  if (/default|drop|ignor|trim|kept|replaced|left empty/.test(done)) return 2;
  return 1;
}

function countsTable(report, pick) {
  const counts = report?.counts || {};
  const entities = Object.keys(counts);
  const extra = (kind, entity) => {
    const value = report?.[kind]?.[entity];
    if (!value) return 0;
    if (typeof value === "number") return value;
    return Object.values(value).reduce((sum, n) => sum + (Number(n) || 0), 0);
  };
  return table(
    "Changes by entity and action",
    [
      { label: "Entity", cell: (e) => ENTITY_NAMES[e] || e },
      ...ACTIONS.map((a) => ({
        label: a,
        cell: (e) => {
          const n = counts[e]?.[a] ?? 0;
          if (!n) return "0";
          const what = `${n} ${a} of ${(ENTITY_NAMES[e] || e).toLowerCase()}`;
          return h("button", { type: "button", class: "link", "aria-label": `List the ${what}`, onclick: () => pick(e, a) }, String(n));
        },
      })),
      { label: "unticked", cell: (e) => String(extra("excluded", e)) },
      { label: "held", cell: (e) => String(extra("held", e)) },
      { label: "refused", cell: (e) => String(extra("refused", e)) },
    ],
    entities,
    { empty: "No changes were staged.", id: "counts-table" },
  );
}

function issuesSection(report, runId) {
  const sample = [...(report?.issues_sample || [])].sort((a, b) => severity(b) - severity(a) || (a.line || 0) - (b.line || 0));
  const total = report?.issues_total ?? sample.length;
  return h(
    "section",
    { "aria-labelledby": "issues-heading" },
    h("h2", { id: "issues-heading" }, `Row issues (${total})`),
    total > sample.length
      ? h("p", { class: "help" }, `The first ${sample.length} of ${total} are shown here; issues.csv has every one.`)
      : null,
    table(
      "Row issues, most serious first",
      [
        { label: "Seriousness", cell: (i) => h("span", { class: `sev sev-${severity(i)}` }, SEVERITY_NAMES[severity(i)]) },
        { label: "Where", cell: (i) => [i.file, i.line ? `line ${i.line}` : null, i.column].filter(Boolean).join(", ") },
        { label: "What was wrong", cell: (i) => i.message },
        { label: "What was done", cell: (i) => i.action || "—" },
      ],
      sample,
      { empty: "No row issues.", id: "issues-table" },
    ),
    total ? fileButton(runId, "issues.csv", "download-issues") : null,
  );
}

/** Names for ids an action refers to (people and classes), from the run and the directory. */
function nameBook(runId) {
  let loading = null;
  return async () => {
    loading ||= (async () => {
      const names = new Map();
      const [users, classes, orgs, dirUsers, dirClasses] = await Promise.all([
        allActions(runId, { entity: "users" }),
        allActions(runId, { entity: "classes" }),
        allActions(runId, { entity: "orgs" }),
        allDirectory("users"),
        allDirectory("classes"),
      ]);
      for (const item of [...dirUsers, ...dirClasses]) names.set(item.source_id, recordName(item));
      for (const action of [...users, ...classes, ...orgs]) {
        if (action.record) names.set(action.source_id, recordName(action.record));
      }
      return names;
    })();
    return loading;
  };
}

function actionName(action, names) {
  const record = action.record || {};
  if (action.entity === "enrollments") {
    const who = names?.get(record.user_source_id) || record.user_source_id || "someone";
    const where = names?.get(record.class_source_id) || record.class_source_id || "a class";
    return `${who} in ${where}${record.role ? ` (${record.role})` : ""}`;
  }
  return recordName(record, action.source_id || action.id);
}

/** The bundle as the admin knows it: its path in the drop box, or "uploaded". */
function bundleName(key) {
  if (!key) return "—";
  const parts = key.split("/");
  if (parts[0] === "inbox") return parts.slice(2).join("/") || "the inbox";
  if (parts[0] === "uploads") return "a bundle uploaded from the console or the command line";
  return "the connected source";
}

function runLink(runId) {
  return runId ? h("a", { href: `#/runs/${runId}` }, runId) : undefined;
}

function changesList(action) {
  const changes = Object.entries(action.changes || {});
  if (!changes.length) return action.action === "add" ? "new record" : "—";
  return h(
    "ul",
    { class: "changes" },
    changes.map(([field, pair]) => {
      const [before, after] = Array.isArray(pair) ? pair : [undefined, pair];
      return h("li", {}, h("span", { class: "field" }, field), ": ", h("del", {}, showValue(before)), " → ", h("ins", {}, showValue(after)));
    }),
  );
}

export async function render(main, { session: current, params }) {
  const runId = params[0];
  let detail = await get(tenantPath(`/runs/${runId}`));
  let stopped = false;
  const header = h("div", { id: "run-summary" });
  const decisions = h("div", { id: "run-decisions" });
  // Outside what is redrawn, so the outcome of a decision stays in view after it.
  const decisionStatus = h("div", { id: "decision-status", "aria-live": "polite" });
  const reportArea = h("div", { id: "run-report" });
  const actionsArea = h("section", { id: "run-actions", "aria-labelledby": "actions-heading" });
  const names = nameBook(runId);
  const state = { entity: "", action: "", included: "", offset: 0 };

  function drawSummary() {
    const run = detail.run;
    replace(
      header,
      facts([
        ["Status", statusBadge(run.status)],
        ["Started", when(run.started_at)],
        ["Finished", when(run.finished_at || run.committed_at)],
        ["Duration", duration(run)],
        ["Trigger", `${run.trigger || "—"}${run.requested_by ? ` by ${run.requested_by}` : ""}`],
        ["Mode", run.mode || "—"],
        ["Bundle", bundleName(run.source_key || run.source?.key)],
        ["Why", run.reason || run.error || undefined],
        ["Approves the held changes of", runLink(run.approves)],
        ["Undoes", runLink(run.undoes)],
        ["Approved in", runLink(run.approved_in)],
        ["Derived from", runLink(run.derived_from)],
      ]),
      isBusy(run.status) ? progressView(run) : null,
      run.status === "held" ? h("div", { class: "notice warn" }, h("p", {}, "This run is held:"), holdReasons(detail.report)) : null,
    );
  }

  function drawDecisions() {
    const run = detail.run;
    const out = decisionStatus;
    const again = async (settled) => {
      if (settled?.run && settled.run.run_id !== runId) {
        location.hash = `#/runs/${settled.run.run_id}`;
        return;
      }
      detail = await get(tenantPath(`/runs/${runId}`));
      drawAll();
    };
    const buttons = [];
    if (run.status === "prepared") buttons.push(decisionButton("commit", run, out, again), decisionButton("discard", run, out, again));
    if (run.status === "held") buttons.push(decisionButton("approve", run, out, again), decisionButton("discard", run, out, again));
    if (run.status === "committed") buttons.push(decisionButton("undo", run, out, again));
    if (!buttons.length) return replace(decisions);
    if (!current.mayWrite) {
      return replace(decisions, h("p", { class: "notice info", id: "viewer-note" }, "You are signed in as a viewer: only an admin can commit, discard, approve or undo."));
    }
    replace(
      decisions,
      h(
        "div",
        { class: "card actions", role: "group", "aria-label": "Decisions on this run" },
        run.status === "prepared" ? h("p", {}, "Commit applies the ticked actions; unticked ones stay in the report as excluded.") : null,
        buttons,
      ),
    );
  }

  function showKind(entity, action) {
    Object.assign(state, { entity, action, included: "", offset: 0 });
    drawActions()
      .then(() => actionsArea.querySelector("h2")?.scrollIntoView())
      .then(() => actionsArea.querySelector("#filter-entity")?.focus())
      .catch(showError);
  }

  function drawReport() {
    const report = detail.report;
    if (!report) return replace(reportArea, h("p", { class: "empty" }, "The report appears once the run has staged its changes."));
    replace(
      reportArea,
      h("section", { "aria-labelledby": "counts-heading" }, h("h2", { id: "counts-heading" }, "Changes"), countsTable(report, showKind)),
      issuesSection(report, runId),
    );
  }

  let drawn = 0;
  async function drawActions() {
    if (!detail.report) return replace(actionsArea);
    // Only the newest of overlapping draws (a filter changed while a page loads) shows.
    const mine = ++drawn;
    const reviewable = detail.run.status === "prepared" && current.mayWrite;
    const query = { offset: state.offset, limit: PAGE, entity: state.entity, action: state.action, included: state.included };
    const page = await get(tenantPath(`/runs/${runId}/actions`), query);
    const book = page.actions.some((a) => a.entity === "enrollments") ? await names() : null;
    if (mine !== drawn) return;
    const status = h("div", { id: "tick-status", "aria-live": "polite" });

    const entitySelect = h("select", { id: "filter-entity" }, h("option", { value: "" }, "every entity"), Object.keys(detail.report.counts || ENTITY_NAMES).map((e) => h("option", { value: e, selected: e === state.entity }, ENTITY_NAMES[e] || e)));
    const actionSelect = h("select", { id: "filter-action" }, h("option", { value: "" }, "every action"), ACTIONS.map((a) => h("option", { value: a, selected: a === state.action }, a)));
    const includedSelect = h(
      "select",
      { id: "filter-included" },
      [["", "ticked and unticked"], ["true", "ticked only"], ["false", "unticked only"]].map(([v, label]) => h("option", { value: v, selected: v === state.included }, label)),
    );
    for (const [select, key] of [[entitySelect, "entity"], [actionSelect, "action"], [includedSelect, "included"]]) {
      select.addEventListener("change", () => {
        state[key] = select.value;
        state.offset = 0;
        drawActions().catch(showError);
      });
    }

    async function tick(kind, selection, label) {
      try {
        const answer = await post(tenantPath(`/runs/${runId}/actions/${kind}`), selection);
        announce(`${label}: ${answer.body.changed} changed.`);
        replace(status, notice("ok", `${label}: ${answer.body.changed} action${answer.body.changed === 1 ? "" : "s"} changed.`));
        detail = await get(tenantPath(`/runs/${runId}`));
        drawReport();
        return true;
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) replace(status, notice("error", error.message));
        return false;
      }
    }

    const bulk =
      reviewable && state.entity
        ? h(
            "div",
            { class: "actions", role: "group", "aria-label": `All ${ENTITY_NAMES[state.entity] || state.entity}` },
            h("button", { type: "button", onclick: async () => (await tick("include", { all_of: kinds() }, `Ticked every ${label()}`)) && drawActions() }, `Tick all ${label()}`),
            h("button", { type: "button", onclick: async () => (await tick("exclude", { all_of: kinds() }, `Unticked every ${label()}`)) && drawActions() }, `Untick all ${label()}`),
          )
        : null;
    function kinds() {
      return (state.action ? [state.action] : ACTIONS).map((a) => `${state.entity}:${a}`);
    }
    function label() {
      const entity = (ENTITY_NAMES[state.entity] || state.entity).toLowerCase();
      return state.action ? `${entity} (${state.action})` : entity;
    }

    const rows = page.actions.map((a) => ({ ...a, name: actionName(a, book) }));
    const columns = [
      {
        label: "Include",
        rowHeader: false,
        cell: (a) => {
          const box = h("input", {
            type: "checkbox",
            checked: a.included,
            disabled: !reviewable || a.applied,
            "aria-label": `Include: ${a.action} ${a.name}`,
            dataset: { action: a.id },
          });
          box.addEventListener("change", async () => {
            box.disabled = true;
            const ok = await tick(box.checked ? "include" : "exclude", { action_ids: [a.id] }, `${box.checked ? "Ticked" : "Unticked"} ${a.action} of ${a.name}`);
            if (!ok) box.checked = !box.checked;
            box.disabled = false;
          });
          return box;
        },
      },
      { label: "Name", cell: (a) => a.name },
      { label: "Entity", cell: (a) => ENTITY_NAMES[a.entity] || a.entity },
      { label: "Action", cell: (a) => h("span", { class: `badge action-${a.action}` }, a.action) },
      { label: "Before → after", cell: changesList },
      { label: "Match", cell: (a) => a.tier || "—" },
      { label: "Note", cell: (a) => [a.held ? "held" : null, a.applied ? "applied" : null, a.reason].filter(Boolean).join("; ") || "—" },
    ];
    const last = Math.min(page.offset + page.actions.length, page.total);
    replace(
      actionsArea,
      h("h2", { id: "actions-heading" }, reviewable ? "Review the actions" : "Actions"),
      reviewable ? h("p", { class: "help" }, "Untick an action to leave it out of the commit.") : null,
      h(
        "div",
        { class: "toolbar", role: "search", "aria-label": "Filter actions" },
        h("label", { for: "filter-entity" }, "Entity"),
        entitySelect,
        h("label", { for: "filter-action" }, "Action"),
        actionSelect,
        h("label", { for: "filter-included" }, "Show"),
        includedSelect,
        fileButton(runId, "actions.csv", "download-actions"),
      ),
      bulk,
      status,
      table(`Actions ${page.total ? page.offset + 1 : 0}–${last} of ${page.total}`, columns, rows, { empty: "No actions match.", id: "actions-table" }),
      h(
        "nav",
        { class: "pager", "aria-label": "Pages of actions" },
        h("button", { type: "button", disabled: page.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); drawActions().catch(showError); } }, "Previous page"),
        h("button", { type: "button", disabled: last >= page.total, onclick: () => { state.offset += PAGE; drawActions().catch(showError); } }, "Next page"),
      ),
    );
  }

  function showError(error) {
    if (error?.status !== 401) replace(actionsArea, notice("error", error.message));
  }

  function drawAll() {
    drawSummary();
    drawDecisions();
    drawReport();
    drawActions().catch(showError);
  }

  replace(main, h("h1", {}, `Run ${runId}`), header, decisions, decisionStatus, reportArea, actionsArea);
  drawAll();
  if (isBusy(detail.run.status)) {
    settle(runId, (run) => {
      if (stopped) return;
      detail = { ...detail, run };
      drawSummary();
    })
      .then((settled) => {
        if (stopped) return;
        detail = settled;
        announce(`Run ${runId} is ${settled.run.status}.`);
        drawAll();
      })
      .catch(() => {});
  }
  return () => {
    stopped = true;
  };
}
