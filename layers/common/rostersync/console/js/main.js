// The console's shell: sign-in from a link's fragment, the navigation, and a hash router
// (#/status, #/runs/{run}, ...) so the pages work from any static host.

import { session, signIn, signOut } from "./api.js";
import { finishHostedSignIn } from "./auth.js";
import { h, replace } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as status from "./pages/status.js";
import * as historyPage from "./pages/history.js";
import * as run from "./pages/run.js";
import * as review from "./pages/review.js";
import * as matching from "./pages/matching.js";
import * as directory from "./pages/directory.js";
import * as configure from "./pages/configure.js";

const ROUTES = [
  [/^signin$/, signin, "signin"],
  [/^status$/, status, "status"],
  [/^history$/, historyPage, "history"],
  [/^runs\/([^/]+)$/, run, "history"],
  [/^review$/, review, "review"],
  [/^matching$/, matching, "matching"],
  [/^directory(?:\/([^/]+))?(?:\/(.+))?$/, directory, "directory"],
  [/^configure$/, configure, "configure"],
];

let cleanup = null;

/** A sign-in link carries the token in its fragment: keep it, then drop it from the URL. */
function takeTokenFromFragment() {
  const fragment = location.hash.replace(/^#/, "");
  if (!fragment.startsWith("token=")) return;
  const params = new URLSearchParams(fragment);
  const token = params.get("token") || "";
  window.history.replaceState(null, "", `${location.pathname}${location.search}#/status`);
  if (!signIn(token, params.get("tenant") || "")) {
    sessionStorage.setItem("rostersync.signin-message", "That sign-in link holds no readable token.");
  }
}

function renderShell(current) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  nav.hidden = !current;
  who.hidden = !current;
  if (!current) return;
  replace(
    who,
    h("span", {}, "Signed in as ", h("strong", {}, current.who)),
    " · ",
    h("span", { class: `badge role-${current.role}`, id: "role" }, current.role),
    " · tenant ",
    h("strong", { id: "tenant" }, current.tenant),
    " ",
    h(
      "button",
      {
        type: "button",
        class: "link",
        onclick: () => {
          signOut();
          location.hash = "#/signin";
        },
      },
      "Sign out",
    ),
  );
}

async function route() {
  takeTokenFromFragment();
  const current = session();
  const path = location.hash.replace(/^#\/?/, "").split("?")[0] || (current ? "status" : "signin");
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  if (!current && path !== "signin") {
    location.hash = "#/signin";
    return;
  }
  renderShell(current);
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById("main");
  const match = ROUTES.map(([pattern, page, nav]) => [path.match(pattern), page, nav]).find(([m]) => m);
  for (const link of document.querySelectorAll("#nav a")) {
    if (match && link.dataset.page === match[2]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!match) {
    replace(main, h("h1", { tabindex: "-1" }, "No such page"), h("p", {}, h("a", { href: "#/status" }, "Go to the status page")));
    main.querySelector("h1").focus();
    return;
  }
  const [found, page] = match;
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    cleanup = (await page.render(main, { session: current, params: found.slice(1).map((p) => p && decodeURIComponent(p)), query })) || null;
  } catch (error) {
    if (error?.status === 401) return;
    replace(
      main,
      h("h1", { tabindex: "-1" }, "Something went wrong"),
      h("div", { class: "notice error", role: "alert" }, error?.message || String(error)),
    );
  }
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    document.title = `${heading.textContent} · rostersync`;
    heading.focus();
  }
}

window.addEventListener("hashchange", route);
finishHostedSignIn()
  .catch(() => false)
  .then(() => route());
