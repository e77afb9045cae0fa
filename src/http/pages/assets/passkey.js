// Latchkey's passkey ceremonies on the hosted pages (API.md section 10). The pages that offer
// passkeys link this file with `defer`; it is the pages' only script, and it runs nothing
// inline, so their policy (default-src 'self') holds. It finds its work by data attributes:
//
//   [data-passkey-sign-in]        "Sign in with a passkey" on the sign-in page, and the
//                                 browser's autofill of passkeys (conditional mediation)
//   [data-passkey-second-factor]  "Use a passkey" on the second-factor page
//   [data-passkey-register]       "Add a passkey" on the account page
//
// Each of those elements holds its button ([data-passkey-button]) and a role="alert" element
// ([data-passkey-problem]) where a problem is told in words. The elements are drawn hidden,
// so a browser without this script or without WebAuthn never shows a button that cannot
// work. The ceremonies speak JSON to the API on this origin; the jwt cookie goes with each
// request (credentials "same-origin").
"use strict";

(() => {
  const API = "/frontend/api/v1";

  /** What the API answered when it did not say yes: its status, body and Retry-After. */
  class ApiProblem extends Error {
    constructor(status, body, retryAfter) {
      super(`the API answered ${status}`);
      this.name = "ApiProblem";
      this.status = status;
      this.body = body && typeof body === "object" ? body : {};
      this.retryAfter = retryAfter;
    }
  }

  /** A problem found before anything was sent, already worded for people. */
  class VisitorProblem extends Error {
    constructor(message) {
      super(message);
      this.name = "VisitorProblem";
    }
  }

  /**
   * POSTs `body` as JSON to the API path and returns the answer's JSON. The pages send
   * `Referrer-Policy: no-referrer`, under which the Fetch standard sends `Origin: null` with
   * a same-origin POST; the API's rule for cookie-authenticated requests needs the real
   * origin, so these requests use the "same-origin" policy (nothing goes to another origin).
   */
  async function postJson(path, body) {
    let response;
    try {
      response = await fetch(API + path, {
        method: "POST",
        credentials: "same-origin",
        referrerPolicy: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiProblem(0, null, null);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    if (!response.ok) {
      throw new ApiProblem(response.status, answer, response.headers.get("Retry-After"));
    }
    return answer || {};
  }

  function bufferFromBase64url(text) {
    const base64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let index = 0; index < binary.length; index += 1) {
      bytes[index] = binary.charCodeAt(index);
    }
    return bytes.buffer;
  }

  function base64urlFromBuffer(buffer) {
    const bytes =
      buffer instanceof ArrayBuffer
        ? new Uint8Array(buffer)
        : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    let binary = "";
    for (const byte of bytes) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /** The options' JSON form, whether the API wraps it in `publicKey` or not. */
  function publicKeyJson(started) {
    const options = started && started.options;
    if (!options || typeof options !== "object") {
      throw new ApiProblem(500, null, null);
    }
    return options.publicKey && typeof options.publicKey === "object" ? options.publicKey : options;
  }

  function descriptorFromJson(descriptor) {
    return Object.assign({}, descriptor, { id: bufferFromBase64url(descriptor.id) });
  }

  /** Creation options for navigator.credentials.create, from their JSON form. */
  function creationOptionsFromJson(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: bufferFromBase64url(json.challenge),
      user: Object.assign({}, json.user, { id: bufferFromBase64url(json.user.id) }),
      excludeCredentials: (json.excludeCredentials || []).map(descriptorFromJson),
    });
  }

  /** Request options for navigator.credentials.get, from their JSON form. */
  function requestOptionsFromJson(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: bufferFromBase64url(json.challenge),
      allowCredentials: (json.allowCredentials || []).map(descriptorFromJson),
    });
  }

  /** A new credential or an assertion in its JSON form, for the API. */
  function credentialJson(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: base64urlFromBuffer(credential.rawId),
      type: credential.type,
      clientExtensionResults:
        typeof credential.getClientExtensionResults === "function"
          ? credential.getClientExtensionResults()
          : {},
      response: { clientDataJSON: base64urlFromBuffer(response.clientDataJSON) },
    };
    if (credential.authenticatorAttachment) {
      json.authenticatorAttachment = credential.authenticatorAttachment;
    }
    if (response.attestationObject) {
      json.response.attestationObject = base64urlFromBuffer(response.attestationObject);
      if (typeof response.getTransports === "function") {
        json.response.transports = response.getTransports();
      }
    }
    if (response.authenticatorData) {
      json.response.authenticatorData = base64urlFromBuffer(response.authenticatorData);
      json.response.signature = base64urlFromBuffer(response.signature);
      if (response.userHandle) {
        json.response.userHandle = base64urlFromBuffer(response.userHandle);
      }
    }
    return json;
  }

  /** "12 seconds", "1 minute", "15 minutes", as the pages word a wait. */
  function describeWait(retryAfter) {
    const seconds = Math.max(1, parseInt(retryAfter, 10) || 1);
    if (seconds < 60) {
      return seconds === 1 ? "1 second" : `${seconds} seconds`;
    }
    const minutes = Math.ceil(seconds / 60);
    return minutes === 1 ? "1 minute" : `${minutes} minutes`;
  }

  /** An API refusal in words; `ceremony` is "sign-in", "second-factor" or "register". */
  function describeApiProblem(problem, ceremony) {
    const context = typeof problem.body.context === "object" ? problem.body.context || {} : {};
    const field = context.field;
    const wrongPassword = ceremony === "register" && problem.body.code === 40101;
    const expiredSignIn =
      ceremony === "second-factor" && (problem.status === 401 || problem.status === 404);
    if (problem.status === 0) {
      return "The service could not be reached. Check your connection and try again.";
    }
    if (problem.status === 429) {
      return `Too many attempts. Please wait ${describeWait(problem.retryAfter)} and try again.`;
    }
    if (problem.status >= 500) {
      return "The service is busy right now. Please try again in a moment.";
    }
    if (field === "password" || field === "old-password" || wrongPassword) {
      return problem.status === 400
        ? "Please enter your current password."
        : "Your current password is not right. Type it again.";
    }
    if (field === "name") {
      return "Give the passkey a shorter name, in letters and numbers.";
    }
    if (field === "mfa-token" || expiredSignIn) {
      return "This sign-in has expired. Start again from the sign-in page.";
    }
    if (context.reason === "origin") {
      return (
        "The request was refused because it did not come from this site's own page. " +
        "Open the page directly and try again."
      );
    }
    switch (problem.status) {
      case 401:
        return ceremony === "register"
          ? "You are no longer signed in. Sign in again, then add the passkey."
          : "That passkey is not known here, or it was removed. Sign in another way.";
      case 403:
        return ceremony === "register"
          ? "Your account cannot add a passkey this way. Sign in again, then try once more."
          : "This account cannot sign in right now. Ask this service's administrator for help.";
      case 404:
        return "The request expired before it was finished. Please try again.";
      case 409:
        return "Passkeys cannot be used on this service right now.";
      default:
        return "The request was not accepted. Reload the page and try again.";
    }
  }

  /** Any failure of a ceremony in words. */
  function describeProblem(error, ceremony) {
    if (error instanceof VisitorProblem) {
      return error.message;
    }
    if (error instanceof ApiProblem) {
      return describeApiProblem(error, ceremony);
    }
    switch (error && error.name) {
      case "NotAllowedError":
        return "The passkey request was cancelled or timed out. Try again when you are ready.";
      case "InvalidStateError":
        return ceremony === "register"
          ? "This device already holds a passkey for your account."
          : "The passkey request could not start. Please try again.";
      case "SecurityError":
        return "Passkeys do not work at this address. Open this service at its usual address.";
      case "NotSupportedError":
        return "This browser or device cannot make or use the kind of passkey this service needs.";
      case "AbortError":
        return "The passkey request was stopped. Please try again.";
      default:
        return "The passkey could not be used. Please try again.";
    }
  }

  function showProblem(container, text) {
    const problem = container.querySelector("[data-passkey-problem]");
    if (problem) {
      problem.textContent = text;
      problem.hidden = !text;
    }
  }

  /**
   * Runs one ceremony from its button: the button is disabled meanwhile, and stays so once
   * the ceremony succeeded (the page is being left); a failure is shown in words.
   */
  async function runCeremony(container, button, ceremony, work) {
    showProblem(container, "");
    button.disabled = true;
    container.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (error) {
      showProblem(container, describeProblem(error, ceremony));
      button.disabled = false;
    } finally {
      container.removeAttribute("aria-busy");
    }
  }

  function setUpSignIn(container, button) {
    const returnUrl = container.dataset.returnUrl || "/account";
    const longTermCheckbox = document.getElementById(container.dataset.longTermCheckbox || "");
    // The pending autofill request: a modal one cannot start while it waits.
    let autofill = null;

    async function finish(challengeId, credential) {
      await postJson("/auth/passkey/sign-in/finish", {
        "challenge-id": challengeId,
        credential: credentialJson(credential),
        "long-term-token": Boolean(longTermCheckbox && longTermCheckbox.checked),
      });
      window.location.assign(returnUrl);
    }

    button.addEventListener("click", () => {
      if (autofill) {
        autofill.abort();
        autofill = null;
      }
      runCeremony(container, button, "sign-in", async () => {
        const started = await postJson("/auth/passkey/sign-in/start", {});
        const credential = await navigator.credentials.get({
          publicKey: requestOptionsFromJson(publicKeyJson(started)),
        });
        await finish(started["challenge-id"], credential);
      });
    });

    // The browser's autofill offers this site's passkeys in the email field
    // (autocomplete="username webauthn") while a conditional request waits. Failing to
    // start one is not the visitor's problem: the password form is still there.
    (async () => {
      if (typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") {
        return;
      }
      const controller = new AbortController();
      let started;
      let credential;
      try {
        if (!(await PublicKeyCredential.isConditionalMediationAvailable())) {
          return;
        }
        autofill = controller;
        started = await postJson("/auth/passkey/sign-in/start", {});
        if (controller.signal.aborted) {
          return;
        }
        credential = await navigator.credentials.get({
          mediation: "conditional",
          publicKey: requestOptionsFromJson(publicKeyJson(started)),
          signal: controller.signal,
        });
      } catch (error) {
        return;
      } finally {
        if (autofill === controller) {
          autofill = null;
        }
      }
      if (credential) {
        runCeremony(container, button, "sign-in", () =>
          finish(started["challenge-id"], credential),
        );
      }
    })();
  }

  function setUpSecondFactor(container, button) {
    const returnUrl = container.dataset.returnUrl || "/account";
    const mfaToken = container.dataset.mfaToken || "";
    button.addEventListener("click", () => {
      runCeremony(container, button, "second-factor", async () => {
        const started = await postJson("/auth/passkey/sign-in/start", { "mfa-token": mfaToken });
        const credential = await navigator.credentials.get({
          publicKey: requestOptionsFromJson(publicKeyJson(started)),
        });
        await postJson("/auth/sign-in/second-factor", {
          "mfa-token": mfaToken,
          "challenge-id": started["challenge-id"],
          credential: credentialJson(credential),
        });
        window.location.assign(returnUrl);
      });
    });
  }

  function setUpRegister(container, button) {
    const nameInput = container.querySelector("[data-passkey-name]");
    const passwordInput = container.querySelector("[data-passkey-password]");
    const doneUrl = container.dataset.doneUrl || "/account#passkeys";
    // Not a form (a password must never go into a URL, as a form without script would
    // send it): Enter in a field does what the button does.
    for (const input of [nameInput, passwordInput]) {
      if (input) {
        input.addEventListener("keydown", (event) => {
          if (event.key === "Enter") {
            event.preventDefault();
            button.click();
          }
        });
      }
    }
    button.addEventListener("click", () => {
      runCeremony(container, button, "register", async () => {
        const name = nameInput ? nameInput.value.trim() : "";
        if (!name) {
          if (nameInput) {
            nameInput.focus();
          }
          throw new VisitorProblem("Give the passkey a name, such as the device that keeps it.");
        }
        const startBody = {};
        if (passwordInput) {
          if (!passwordInput.value) {
            passwordInput.focus();
            throw new VisitorProblem("Please enter your current password.");
          }
          startBody.password = passwordInput.value;
        }
        const started = await postJson("/auth/passkey/register/start", startBody);
        if (passwordInput) {
          passwordInput.value = "";
        }
        const credential = await navigator.credentials.create({
          publicKey: creationOptionsFromJson(publicKeyJson(started)),
        });
        await postJson("/auth/passkey/register/finish", {
          "challenge-id": started["challenge-id"],
          name,
          credential: credentialJson(credential),
        });
        window.location.assign(doneUrl);
      });
    });
  }

  const ceremonies = [
    ["data-passkey-sign-in", setUpSignIn],
    ["data-passkey-second-factor", setUpSecondFactor],
    ["data-passkey-register", setUpRegister],
  ];
  const supported =
    window.isSecureContext &&
    typeof window.PublicKeyCredential === "function" &&
    Boolean(navigator.credentials);
  for (const [attribute, setUp] of ceremonies) {
    for (const container of document.querySelectorAll(`[${attribute}]`)) {
      const button = container.querySelector("[data-passkey-button]");
      if (!button) {
        continue;
      }
      if (supported) {
        setUp(container, button);
        container.hidden = false;
      } else if (attribute !== "data-passkey-sign-in") {
        // Where the passkey is what the visitor came for, say why it cannot be used; the
        // sign-in page keeps its password form and shows nothing.
        button.disabled = true;
        showProblem(container, "This browser cannot use passkeys here. Try another browser.");
        container.hidden = false;
      }
    }
  }
})();
