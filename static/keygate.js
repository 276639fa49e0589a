// keygate's WebAuthn ceremonies. No framework: read the form, ask the server for options,
// ask the browser for a credential, send it back, show the result.
"use strict";

(function () {
  const csrf = () => {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };

  const b64urlToBytes = (s) => {
    const pad = "=".repeat((4 - (s.length % 4)) % 4);
    const bin = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  };

  const bytesToB64url = (buf) => {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  async function postJSON(url, body) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.message) || ("HTTP " + res.status));
      err.code = data && data.error;
      err.refusals = (data && data.refusals) || [];
      throw err;
    }
    return data;
  }

  function show(text, kind) {
    const el = document.getElementById("status");
    if (!el) return;
    el.textContent = text;
    el.className = kind || "";
  }

  function showRefusal(err) {
    const box = document.getElementById("refusal");
    const list = document.getElementById("refusal-reasons");
    if (!box || !list) return;
    list.textContent = "";
    const items = err.refusals.length ? err.refusals : [{ rule: err.code || "error", message: err.message, remedy: "" }];
    for (const r of items) {
      const li = document.createElement("li");
      li.dataset.rule = r.rule;
      const what = document.createElement("strong");
      what.textContent = r.message;
      li.appendChild(what);
      if (r.remedy) {
        const how = document.createElement("span");
        how.textContent = " " + r.remedy;
        li.appendChild(how);
      }
      const code = document.createElement("code");
      code.textContent = " (" + r.rule + ")";
      li.appendChild(code);
      list.appendChild(li);
    }
    box.hidden = false;
  }

  async function enrol(form) {
    const field = (name) => (form.elements[name] ? form.elements[name].value : undefined);
    const token = form.dataset.token || undefined;
    document.getElementById("refusal").hidden = true;
    show("Preparing…");
    const options = await postJSON("/api/enrol/begin", {
      token: token,
      email: field("email"),
      display_name: field("display_name"),
    });
    options.challenge = b64urlToBytes(options.challenge);
    options.user.id = b64urlToBytes(options.user.id);
    options.excludeCredentials = (options.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) }));
    show("Touch your security key…");
    const cred = await navigator.credentials.create({ publicKey: options });
    show("Checking your key…");
    const result = await postJSON("/api/enrol/finish", {
      nickname: field("nickname") || "",
      credential: {
        id: cred.id,
        rawId: bytesToB64url(cred.rawId),
        type: cred.type,
        response: {
          clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
          attestationObject: bytesToB64url(cred.response.attestationObject),
          transports: cred.response.getTransports ? cred.response.getTransports() : [],
        },
      },
    });
    show("Key enrolled" + (result.model ? ": " + result.model : "") + ".", "ok");
    document.body.dataset.enrolled = result.key_id;
    window.location.assign("/me");
  }

  async function signin(form) {
    const email = form.elements.email ? form.elements.email.value : "";
    document.getElementById("refusal").hidden = true;
    show("Preparing…");
    const options = await postJSON("/api/signin/begin", { email: email || undefined });
    options.challenge = b64urlToBytes(options.challenge);
    options.allowCredentials = (options.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) }));
    show("Touch your security key…");
    const cred = await navigator.credentials.get({ publicKey: options });
    show("Checking…");
    await postJSON("/api/signin/finish", {
      credential: {
        id: cred.id,
        rawId: bytesToB64url(cred.rawId),
        type: cred.type,
        response: {
          clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
          authenticatorData: bytesToB64url(cred.response.authenticatorData),
          signature: bytesToB64url(cred.response.signature),
          userHandle: cred.response.userHandle ? bytesToB64url(cred.response.userHandle) : null,
        },
      },
    });
    show("Signed in.", "ok");
    // Back to the application that asked for the sign-in, if one did.
    const next = form.dataset.continue;
    // The server wrote where to continue (a path of this gateway, never a full URL).
    window.location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/me");
  }

  // Approving a device sign-in: the challenge is the digest of exactly this request.
  async function device(form) {
    const userCode = form.dataset.userCode;
    document.getElementById("refusal").hidden = true;
    show("Preparing…");
    const options = await postJSON("/api/device/approve/begin", { user_code: userCode });
    options.challenge = b64urlToBytes(options.challenge);
    options.allowCredentials = (options.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) }));
    show("Touch your security key to approve…");
    const cred = await navigator.credentials.get({ publicKey: options });
    show("Checking…");
    await postJSON("/api/device/approve/finish", {
      user_code: userCode,
      credential: {
        id: cred.id,
        rawId: bytesToB64url(cred.rawId),
        type: cred.type,
        response: {
          clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
          authenticatorData: bytesToB64url(cred.response.authenticatorData),
          signature: bytesToB64url(cred.response.signature),
          userHandle: cred.response.userHandle ? bytesToB64url(cred.response.userHandle) : null,
        },
      },
    });
    show("Approved. The device is signed in; you can close this window.", "ok");
    document.body.dataset.deviceApproved = "1";
  }

  const ceremonies = { enrol: enrol, signin: signin, device: device };

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form[data-ceremony]");
    if (!form) return;
    const run = ceremonies[form.dataset.ceremony];
    if (!run) return;
    const button = form.querySelector('button[type="submit"]');
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (button) button.disabled = true; // one ceremony at a time
      run(form)
        .catch((err) => {
          show("", "");
          if (err.code === "reauthentication_required") {
            window.location.assign("/?reauth=1");
            return;
          }
          if (err.name === "NotAllowedError") {
            show("The key was not used, or the request timed out. Try again.", "problem");
            return;
          }
          showRefusal(err);
        })
        .finally(() => {
          if (button) button.disabled = false;
        });
    });
  });
})();

// A SAML response page posts itself to the service provider.
for (const form of document.querySelectorAll("form[data-autosubmit]")) {
  form.submit();
}
