// History: every run with its trigger, who, mode, status, counts, duration and issues.

import { get, isBusy, tenantPath } from "../api.js";
import { countsText, duration, h, replace, statusBadge, table, when } from "../dom.js";

export async function render(main) {
  const filter = h("select", { id: "history-status" }, ["", "committed", "prepared", "held", "failed", "discarded", "approved"].map((s) => h("option", { value: s }, s || "every status")));
  const list = h("div", { id: "history-list" });
  let runs = [];
  let timer = null;

  function show() {
    const wanted = filter.value;
    const shown = runs.filter((r) => !wanted || r.status === wanted);
    replace(
      list,
      table(
        `${shown.length} run${shown.length === 1 ? "" : "s"}, newest first`,
        [
          { label: "Run", cell: (r) => h("a", { href: `#/runs/${r.run_id}` }, when(r.started_at)) },
          { label: "Status", cell: (r) => statusBadge(r.status) },
          { label: "Trigger", cell: (r) => r.trigger || "—" },
          { label: "Who", cell: (r) => r.requested_by || r.committed_by || "—" },
          { label: "Mode", cell: (r) => r.mode || "—" },
          { label: "Changes", cell: (r) => countsText(r.counts) },
          { label: "Duration", cell: (r) => duration(r) },
          { label: "Issues", cell: (r) => String(r.issue_count ?? 0) },
        ],
        shown,
        { empty: "No runs yet: start one with Sync now on the status page.", id: "history-table" },
      ),
    );
  }

  async function load() {
    runs = (await get(tenantPath("/runs"), { limit: 500 })).runs;
    show();
    clearTimeout(timer);
    if (runs.some((r) => isBusy(r.status))) timer = setTimeout(() => load().catch(() => {}), 1500);
  }

  filter.addEventListener("change", show);
  replace(
    main,
    h("h1", {}, "History"),
    h("div", { class: "toolbar" }, h("label", { for: "history-status" }, "Show"), filter),
    list,
  );
  await load();
  return () => clearTimeout(timer);
}
