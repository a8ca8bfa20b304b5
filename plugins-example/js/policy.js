// Herald's reference push policy, in JavaScript.
//
// Page -> assets from the policy's configuration, minus the assets the
// client's cookie says it already has, and nothing for requests that are not
// page navigations. The same behaviour as the Rust, Python and C versions; the
// conformance table in `plugins-example/conformance.toml` holds all four to it.
//
//     [policy.config]
//     cookie = "herald-have"                      # optional, this is the default
//     "/" = ["/css/site.css u=0", "/js/app.js u=1", "/img/hero.jpg u=5 i"]
//
// WIT to JavaScript: records are objects with camelCase fields, enums are
// their WIT names as strings, `option` is a value or `undefined`, and the
// `err` of `result` is a thrown value.

import { get } from "herald:policy/config@0.1.2";

const DEFAULT_COOKIE = "herald-have";

// File extension -> destination, when a spec has no `as=`.
const EXTENSIONS = {
  css: "style",
  js: "script",
  mjs: "script",
  woff2: "font",
  woff: "font",
  ttf: "font",
  otf: "font",
  png: "image",
  jpg: "image",
  jpeg: "image",
  gif: "image",
  webp: "image",
  avif: "image",
  svg: "image",
  ico: "image",
  html: "document",
  htm: "document",
  mp3: "audio",
  ogg: "audio",
  wav: "audio",
  flac: "audio",
  mp4: "video",
  webm: "video",
  vtt: "track",
  webmanifest: "manifest",
};

// `as=` names.
const DESTINATIONS = new Set([
  "style", "script", "font", "image", "fetch", "document",
  "audio", "video", "track", "worker", "manifest",
]);

function header(req, name) {
  const h = req.headers.find((h) => h.name === name);
  return h === undefined ? undefined : h.value;
}

// A page load: Fetch Metadata says so, or (without it) `accept` does.
function isNavigation(req) {
  if (req.method !== "GET") return false;
  const mode = header(req, "sec-fetch-mode");
  const dest = header(req, "sec-fetch-dest");
  if (mode !== undefined || dest !== undefined) {
    return mode === "navigate" || dest === "document";
  }
  const accept = header(req, "accept");
  if (accept === undefined) return true;
  return accept.includes("text/html") || (accept.includes("*/*") && !accept.includes(","));
}

function destinationOf(path) {
  const file = path.split("?")[0].split("#")[0].split("/").pop();
  const dot = file.lastIndexOf(".");
  if (dot < 0) return "fetch";
  return EXTENSIONS[file.slice(dot + 1).toLowerCase()] ?? "fetch";
}

function number(value, low, high) {
  if (!/^[0-9]+$/.test(value)) return undefined;
  const n = Number(value);
  return n >= low && n <= high ? n : undefined;
}

// `/path attr...` -> a hint; throws a message naming the bad attribute.
function parseSpec(spec) {
  const words = spec.split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) throw "empty asset spec";
  const path = words[0];
  const hint = {
    path,
    urgency: 3,
    incremental: false,
    weight: 16,
    destination: destinationOf(path),
    crossorigin: undefined,
    copyHeaders: undefined,
    headers: [],
    delivery: "auto",
  };
  for (const word of words.slice(1)) {
    const eq = word.indexOf("=");
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    if (key === "as" && value !== undefined && DESTINATIONS.has(value)) {
      hint.destination = value;
    } else if (key === "u" && value !== undefined && number(value, 0, 7) !== undefined) {
      hint.urgency = number(value, 0, 7);
    } else if (key === "w" && value !== undefined && number(value, 1, 256) !== undefined) {
      hint.weight = number(value, 1, 256);
    } else if (word === "i") {
      hint.incremental = true;
    } else if (word === "push") {
      hint.delivery = "push-only";
    } else if (word === "hint") {
      hint.delivery = "hint-only";
    } else if (word === "crossorigin" || word === "crossorigin=anonymous") {
      hint.crossorigin = "anonymous";
    } else if (word === "crossorigin=use-credentials") {
      hint.crossorigin = "use-credentials";
    } else {
      throw `asset \`${path}\`: bad attribute \`${word}\``;
    }
  }
  return hint;
}

// The configuration is fixed for an instance's life (a new policy version
// gets new instances), so with `isolation = "reuse"` each configured page's
// specs are parsed once, not on every request. Only configured pages are
// kept: the memo is bounded by the configuration, not by what clients ask.
const pages = new Map();
let cookieName = null;

function configuredHints(path) {
  let hints = pages.get(path);
  if (hints === undefined) {
    const specs = get(path);
    hints = specs.map(parseSpec);
    if (specs.length > 0) pages.set(path, hints);
  }
  return hints;
}

export function decide(req) {
  if (!isNavigation(req)) return [];
  const hints = configuredHints(req.path);
  if (cookieName === null) {
    const names = get("cookie");
    cookieName = names.length > 0 ? names[0] : DEFAULT_COOKIE;
  }
  const cookie = cookieName;
  const seen = req.cookies.find((c) => c.name === cookie);
  const have = seen === undefined ? [] : seen.value.split("|");
  return hints.filter((h) => !have.includes(h.path));
}

// What `decide` reads besides the method and the path: Herald shows it only
// these (on the QuickJS runner, the default build; componentize-js builds
// for the `push-policy` world, which has no `reads`, and shows it all).
export function reads() {
  const names = get("cookie");
  return {
    headers: ["sec-fetch-dest", "sec-fetch-mode", "accept"],
    cookies: [names.length > 0 ? names[0] : DEFAULT_COOKIE],
  };
}
