// The runner's own test policy (src/lib.rs's tests, natively): what it
// does is picked by the request's path.
import { get, keys, json } from "herald:policy/config@0.1.2";

function hint(path) {
  return {
    path,
    urgency: 3,
    incremental: false,
    weight: 16,
    destination: "fetch",
    crossorigin: undefined,
    copyHeaders: undefined,
    headers: [],
    delivery: "auto",
  };
}

let calls = 0;
let jobs = 0;

export function decide(req) {
  calls += 1;
  switch (req.path) {
    case "/echo":
      return [
        `/m/${req.method}`,
        `/s/${req.scheme}`,
        `/a/${req.authority}`,
        `/p/${encodeURIComponent(req.path)}`,
        `/q/${req.query === undefined ? "undefined" : encodeURIComponent(req.query)}`,
        `/h/${req.headers.map((h) => `${h.name}%3D${encodeURIComponent(h.value)}`).join(",")}`,
        `/c/${req.cookies.map((c) => `${c.name}%3D${encodeURIComponent(c.value)}`).join(",")}`,
        `/push/${req.pushEnabled}`,
        `/v/${req.variantName}`,
      ].map(hint);
    case "/full":
      return [
        {
          path: "/font.woff2?v=2",
          urgency: 1,
          incremental: true,
          weight: 200,
          destination: "font",
          crossorigin: "use-credentials",
          copyHeaders: ["accept-language"],
          headers: [{ name: "accept", value: "font/woff2" }],
          delivery: "push-only",
        },
        { ...hint("/b"), crossorigin: null, copyHeaders: null, delivery: "hint-only" },
      ];
    case "/config":
      return [
        ...get("/"),
        `/keys/${keys().map(encodeURIComponent).join(",")}`,
        `/json/${Object.keys(JSON.parse(json())).length}`,
      ].map(hint);
    case "/count":
      return [hint(`/count/${calls}`)];
    case "/async":
      return (async () => [hint("/async")])();
    case "/async/rejected":
      return Promise.reject("no hints, later");
    case "/async/never":
      return new Promise(() => {});
    case "/jobs":
      // Runs after this call returns, before the next one.
      Promise.resolve().then(() => {
        jobs += 1;
      });
      return [hint(`/jobs/${jobs}`)];
    case "/getter":
      return [
        {
          ...hint("/x"),
          get path() {
            throw new Error("no path");
          },
        },
      ];
    case "/long":
      return new Array(20000);
    case "/throw/string":
      throw "no hints for you";
    case "/throw/error":
      throw new TypeError("bad input");
    case "/throw/object":
      throw { code: 7 };
    case "/wrong/result":
      return 5;
    case "/wrong/hint":
      return ["/a.css"];
    case "/wrong/path":
      return [{ ...hint("/x"), path: 1 }];
    case "/wrong/urgency":
      return [{ ...hint("/x"), urgency: 1.5 }];
    case "/wrong/destination":
      return [{ ...hint("/x"), destination: "stylesheet" }];
    case "/wrong/delivery":
      return [{ ...hint("/x"), delivery: "later" }];
    case "/wrong/headers": {
      const h = hint("/x");
      delete h.headers;
      return [h];
    }
    default:
      return [];
  }
}

// What it reads: by the configuration's `reads_mode`, a declaration, a
// throw, a wrong shape, or nothing.
export function reads() {
  switch (get("reads_mode")[0]) {
    case "throw":
      throw new TypeError("no declaration today");
    case "bad":
      return { headers: [1] };
    case "none":
      return undefined;
    default:
      return { headers: ["Accept"], cookies: get("cookie") };
  }
}
