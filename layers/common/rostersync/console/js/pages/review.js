// Review: the runs waiting for an admin (prepared, held), each opening its actions.

import { get, tenantPath } from "../api.js";
import { countsText, h, replace, statusBadge, table, when } from "../dom.js";

export async function render(main) {
  const runs = (await get(tenantPath("/runs"), { limit: 100 })).runs.filter((r) => r.status === "prepared" || r.status === "held");
  replace(
    main,
    h("h1", {}, "Review"),
    h("p", {}, "Prepared runs wait for a commit; held runs wait for an approval of their held changes."),
    table(
      "Runs waiting for an admin",
      [
        { label: "Run", cell: (r) => h("a", { href: `#/runs/${r.run_id}` }, `Review run ${r.run_id}`) },
        { label: "Status", cell: (r) => statusBadge(r.status) },
        { label: "Started", cell: (r) => when(r.started_at) },
        { label: "Changes", cell: (r) => countsText(r.counts) },
        { label: "Why", cell: (r) => r.reason || (r.hold || []).map((x) => x.message).join("; ") || "—" },
      ],
      runs,
      { empty: "Nothing waits for review.", id: "review-table" },
    ),
  );
}
