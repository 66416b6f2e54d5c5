// after's login page: public, so that a browser without a session sees a form. CouchDB
// serves the console attached to a database with members only to a session (anonymous
// gets its JSON 401), so this page lives in a database everyone may read and nobody but a
// server admin may write (afterd/console/install.py). It logs in with /_session, then
// opens the console of the database named by ?db= (same origin, so the cookie goes along).
const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;   // CouchDB's rule for database names
const $ = (id) => document.getElementById(id);

const db = new URLSearchParams(location.search).get("db") || "tasks";
const consolePage = "/" + encodeURIComponent(db) + "/_design/after/console.html" + location.hash;

async function call(method, path, body) {
  const init = {method, credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  try {
    data = await resp.json();
  } catch (e) {
    data = null;
  }
  return {status: resp.status, ok: resp.ok, data};
}

function show(message) {
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-name").focus();
}

// With a session: into the console, if this user may read the database; else say why.
async function enter(user) {
  const answer = await call("GET", "/" + encodeURIComponent(db));
  if (answer.ok) {
    location.replace(consolePage);
    return;
  }
  const who = user.name || "this session";
  if (answer.status === 404) show(`There is no database "${db}" on this server.`);
  else if (answer.status === 401 || answer.status === 403) {
    show(`Logged in as ${who}, which may not read the database "${db}": ` +
         'it needs the role "after" or "after_reader" (ask an admin).');
  } else show(`CouchDB answered ${answer.status} for the database "${db}".`);
}

function signedIn(info) {
  const user = info && info.userCtx;
  // A server without admins makes everyone admin: nobody to log in as.
  const adminParty = user && !user.name && (user.roles || []).includes("_admin");
  return user && (user.name || adminParty) ? user : null;
}

async function start() {
  $("db").textContent = "· " + db;
  if (!DB_NAME.test(db)) {
    show(`"${db}" is not a database name: open this page with ?db=<your tasks database>.`);
    $("login-submit").disabled = true;
    return;
  }
  let user = null;
  try {
    user = signedIn((await call("GET", "/_session")).data);
  } catch (e) {
    show("CouchDB did not answer: " + e.message);
    return;
  }
  if (user) await enter(user);
  else show("");
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const answer = await call("POST", "/_session", {name: $("login-name").value, password: $("login-password").value});
    $("login-password").value = "";
    if (answer.status === 401) return show("Name or password is wrong.");
    if (!answer.ok) return show("Could not log in: " + ((answer.data && answer.data.reason) || answer.status));
    await enter(signedIn((await call("GET", "/_session")).data) || {name: $("login-name").value});
  } catch (e) {
    show("CouchDB did not answer: " + e.message);
  }
});

start();
