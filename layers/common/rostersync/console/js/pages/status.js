// Status: the last run, the next scheduled one, held runs and their reasons, the run going
// on now (refreshed live), and Sync now.

import { ApiError, get, isBusy, post, settle, tenantPath } from "../api.js";
import { announce, countsText, duration, facts, h, notice, replace, statusBadge, table, when } from "../dom.js";
import { decisionButton, holdReasons, progressView } from "../runs.js";

const FINISHED_QUIETLY = new Set(["discarded", "approved", "superseded"]);

/** The next moment a daily ``HH:MM`` falls in ``timezone`` after ``now`` (null if unknown). */
export function nextScheduled(schedule, now = new Date()) {
  if (!schedule?.time) return null;
  const [hour, minute] = schedule.time.split(":").map(Number);
  let format;
  try {
    format = new Intl.DateTimeFormat("en-CA", {
      timeZone: schedule.timezone || "UTC",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
  } catch {
    return null;
  }
  const wall = (date) => Object.fromEntries(format.formatToParts(date).map((p) => [p.type, Number(p.value)]));
  const today = wall(now);
  for (let days = 0; days < 3; days += 1) {
    const guess = Date.UTC(today.year, today.month - 1, today.day + days, hour, minute);
    const seen = wall(new Date(guess));
    const offset = Date.UTC(seen.year, seen.month - 1, seen.day, seen.hour, seen.minute) - guess;
    const moment = new Date(guess - offset);
    if (moment > now) return moment;
  }
  return null;
}

function scheduleSection(settings) {
  const schedule = settings?.schedule;
  if (!schedule) {
    return h(
      "p",
      { id: "next-sync" },
      "No daily sync is scheduled. ",
      h("a", { href: "#/configure" }, "Set a schedule"),
      " to sync the newest bundle in the inbox every day.",
    );
  }
  const next = nextScheduled(schedule);
  const zone = schedule.timezone || "UTC";
  return h(
    "p",
    { id: "next-sync" },
    `Daily at ${schedule.time} (${zone}), ${schedule.mode || "full"} sync. Next: `,
    h(
      "strong",
      {},
      next ? next.toLocaleString(undefined, { timeZone: zone, dateStyle: "full", timeStyle: "short" }) : "unknown",
    ),
    next ? ` (${next.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })} your time)` : "",
    ".",
  );
}

function lastRunSection(run) {
  if (!run) return h("p", { class: "empty" }, "No run has finished yet.");
  const why = run.reason || run.error || null;
  return h(
    "div",
    { id: "last-run" },
    facts([
      ["Result", statusBadge(run.status)],
      ["Started", when(run.started_at)],
      ["Trigger", `${run.trigger || "—"}${run.requested_by ? ` by ${run.requested_by}` : ""}`],
      ["Mode", run.mode || "—"],
      ["Changes", countsText(run.counts)],
      ["Duration", duration(run)],
      ["Row issues", String(run.issue_count ?? 0)],
      ["Why", why || undefined],
    ]),
    h("p", {}, h("a", { href: `#/runs/${run.run_id}` }, `Open the report of run ${run.run_id}`)),
  );
}

const SOURCE_NAMES = {
  oneroster_csv: "OneRoster files (upload, SFTP drop box or inbox)",
  clever: "Clever",
  oneroster_rest: "OneRoster REST API",
  wonde: "Wonde",
  assembly: "Assembly",
};

function sourceSection(source) {
  if (!source) return h("p", { class: "empty", id: "source" }, "Unknown: the source could not be read.");
  return h(
    "p",
    { id: "source" },
    h("strong", {}, SOURCE_NAMES[source.kind] || source.kind),
    source.connected_at ? ` — connected ${when(source.connected_at)}${source.connected_by ? ` by ${source.connected_by}` : ""}.` : ".",
    " ",
    h("a", { href: "#/configure" }, "Change the source or deliver a bundle"),
  );
}

function rejectionsSection(rejections) {
  return h(
    "section",
    { "aria-labelledby": "rejected-heading", class: "attention", id: "inbox-rejections" },
    h("h2", { id: "rejected-heading" }, "Files the inbox refused"),
    h("p", { class: "help" }, "These files were dropped in the inbox but never synced. Fix each and send it again."),
    table(
      `The last ${rejections.length} refused file${rejections.length === 1 ? "" : "s"}, newest first`,
      [
        { label: "File", cell: (r) => r.file },
        { label: "Why", cell: (r) => r.reason },
        { label: "When", cell: (r) => when(r.rejected_at) },
      ],
      rejections,
      { id: "rejections-table" },
    ),
  );
}

function syncForm(current, onStarted) {
  const result = h("div", { id: "sync-result" });
  if (!current.mayWrite) {
    return h("p", { class: "help" }, "Viewers can watch runs but not start them.");
  }
  const form = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "sync-heading",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        replace(result);
        try {
          const answer = await post(tenantPath("/runs"), { mode: data.get("mode"), review: data.get("review") === "on" });
          announce(`Run ${answer.body.run_id} started.`);
          onStarted(answer.body.run_id, result);
        } catch (error) {
          if (error instanceof ApiError && error.status === 409 && error.runId) {
            replace(result, notice("warn", `A run is already going: `, h("a", { href: `#/runs/${error.runId}` }, error.runId), "."));
          } else if (error.status !== 401) {
            replace(result, notice("error", error.message));
          }
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h2", { id: "sync-heading" }, "Sync now"),
    h("p", { class: "help" }, "Syncs the connected source, or the newest complete bundle in the tenant's inbox. ", h("a", { href: "#/configure" }, "Upload a bundle"), " to sync a file from this computer."),
    h(
      "fieldset",
      {},
      h("legend", {}, "Mode"),
      h("label", { class: "choice" }, h("input", { type: "radio", name: "mode", value: "full", checked: true }), " Full: records missing from the bundle are archived"),
      h("label", { class: "choice" }, h("input", { type: "radio", name: "mode", value: "quick" }), " Quick: only what the bundle carries"),
    ),
    h("label", { class: "choice" }, h("input", { type: "checkbox", name: "review", id: "sync-review", checked: true }), " Stop for review before committing"),
    h("p", { class: "help" }, "Untick to commit automatically (unless a hold threshold trips)."),
    h("button", { type: "submit", class: "primary" }, "Sync now"),
    result,
  );
  return form;
}

export async function render(main, { session: current }) {
  const live = h("div", { id: "status-live" });
  let timer = null;
  let stopped = false;
  let lastSeen = "";
  let source = null;

  async function refresh() {
    const [runs, settings, rejections] = await Promise.all([
      get(tenantPath("/runs"), { limit: 50 }).then((b) => b.runs),
      get(tenantPath("/settings")).then((b) => b.settings),
      get(tenantPath("/inbox/rejections"), { limit: 10 }).then((b) => b.rejections),
      source ? Promise.resolve(source) : get(tenantPath("/source")).catch(() => null),
    ]).then(([r, s, j, c]) => {
      source = c;
      return [r, s, j];
    });
    const busy = runs.filter((r) => isBusy(r.status));
    const held = runs.filter((r) => r.status === "held");
    const prepared = runs.filter((r) => r.status === "prepared");
    const last = runs.find((r) => !isBusy(r.status) && !FINISHED_QUIETLY.has(r.status));
    const seen = JSON.stringify([runs, settings?.schedule, rejections]);
    if (seen !== lastSeen) {
      lastSeen = seen;
      const reports = await Promise.all(held.map((r) => get(tenantPath(`/runs/${r.run_id}`))));
      replace(
        live,
        h("section", { "aria-labelledby": "source-heading" }, h("h2", { id: "source-heading" }, "Source"), sourceSection(source)),
        h(
          "section",
          { "aria-labelledby": "running-heading" },
          h("h2", { id: "running-heading" }, "Running now"),
          busy.length ? busy.map((r) => progressView(r)) : h("p", { class: "empty" }, "No run is going."),
        ),
        held.length
          ? h(
              "section",
              { "aria-labelledby": "held-heading", class: "attention" },
              h("h2", { id: "held-heading" }, "Held for an admin"),
              reports.map((detail) => heldRun(detail, current)),
            )
          : null,
        prepared.length
          ? h(
              "section",
              { "aria-labelledby": "prepared-heading", class: "attention" },
              h("h2", { id: "prepared-heading" }, "Waiting for review"),
              h(
                "ul",
                {},
                prepared.map((r) =>
                  h("li", {}, h("a", { href: `#/runs/${r.run_id}` }, `Review run ${r.run_id}`), ` — ${countsText(r.counts)}, started ${when(r.started_at)}, ${duration(r)}`),
                ),
              ),
            )
          : null,
        h("section", { "aria-labelledby": "last-heading" }, h("h2", { id: "last-heading" }, "Last run"), lastRunSection(last)),
        rejections.length ? rejectionsSection(rejections) : null,
        h("section", { "aria-labelledby": "next-heading" }, h("h2", { id: "next-heading" }, "Next scheduled sync"), scheduleSection(settings)),
      );
    }
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => refresh().catch(() => {}), busy.length ? 700 : 5000);
  }

  function heldRun(detail, who) {
    const run = detail.run;
    const out = h("div", { id: "decision-status" });
    return h(
      "article",
      { class: "card", "aria-labelledby": `held-${run.run_id}` },
      h("h3", { id: `held-${run.run_id}` }, `Run ${run.run_id}, started ${when(run.started_at)}`),
      holdReasons(detail.report) || h("p", {}, run.reason || "Held."),
      h("p", {}, h("a", { href: `#/runs/${run.run_id}` }, "See the held changes")),
      who.mayWrite
        ? h(
            "div",
            { class: "actions" },
            decisionButton("approve", run, out, (settled) => {
              location.hash = settled?.run ? `#/runs/${settled.run.run_id}` : "#/history";
            }),
            decisionButton("discard", run, out, () => refresh()),
          )
        : null,
      out,
    );
  }

  replace(
    main,
    h("h1", {}, "Status"),
    h("div", { class: "columns" }, h("div", {}, live), h("div", {}, syncForm(current, watch))),
  );

  async function watch(runId, result) {
    clearTimeout(timer);
    refresh().catch(() => {});
    try {
      const detail = await settle(runId, (run) => replace(result, progressView(run)));
      const run = detail.run;
      replace(
        result,
        notice(run.status === "failed" ? "error" : "ok", `Run ${run.run_id} is ${run.status}. `, h("a", { href: `#/runs/${run.run_id}`, id: "open-run" }, run.status === "prepared" ? "Review it" : "Open its report")),
      );
      announce(`Run ${run.run_id} is ${run.status}.`);
      lastSeen = "";
      clearTimeout(timer);
      refresh().catch(() => {});
    } catch (error) {
      if (error.status !== 401) replace(result, notice("error", error.message));
    }
  }

  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
