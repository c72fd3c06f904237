/* Work under way, and no second submit (H1 6). Progressive enhancement only: without JavaScript
   every form posts and every link downloads as before, and the server's locks still hold.

   - A plain form marked `data-busy` (a full-page post): once it submits, its submit buttons are
     disabled and the one pressed gets aria-busy="true" (Pico draws a spinner); another submit of
     the form is ignored until the page is left. A disabled button is left out of a submission, so
     the pressed button's name and value go along in a hidden input.
   - An htmx request: the element carries `hx-disabled-elt` (htmx disables the buttons while it
     runs) and `hx-indicator` (htmx marks them .htmx-request); the marked buttons inside the element
     also get aria-busy="true" here until the request ends.
   - A link marked `data-busy` (a PDF download: the page stays): the file is fetched here, so the
     link shows busy for exactly as long as the server takes to make it, and another click is
     ignored meanwhile; then it is saved under the server's file name. An answer that is not a file
     (an error page, the sign-in page) is opened as the plain link would have opened it.
   A page brought back by the Back button (bfcache, or htmx's history) is shown idle again. */
(function () {
  "use strict";

  // What this script changes carries a marker, so that anything left busy can be put back.
  function busy(el) {
    el.setAttribute("aria-busy", "true");
    el.setAttribute("data-busy-mark", "");
  }

  function idle(el) {
    el.removeAttribute("aria-busy");
    el.removeAttribute("data-busy-mark");
  }

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  function restoreAll() {
    each("[data-busy-mark]", idle);
    each("[data-busy-disabled]", function (el) { el.disabled = false; el.removeAttribute("data-busy-disabled"); });
    each("[data-busy-copy]", function (el) { el.remove(); });
    each("form[data-busy-submitting]", function (el) { el.removeAttribute("data-busy-submitting"); });
    each("a[data-busy][aria-disabled]", function (el) { el.removeAttribute("aria-disabled"); });
  }

  function submitButtons(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.type === "submit" && (el.tagName === "BUTTON" || el.tagName === "INPUT");
    });
  }

  // Plain forms. Listening on the document, after the form's own listeners: a submit that htmx or
  // a page script has taken over (defaultPrevented) is theirs to show.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-busy") || event.defaultPrevented) {
      return;
    }
    if (form.hasAttribute("data-busy-submitting")) {
      event.preventDefault();
      return;
    }
    form.setAttribute("data-busy-submitting", "");
    var pressed = event.submitter || submitButtons(form)[0] || null;
    if (pressed && pressed.name) {
      var copy = document.createElement("input");
      copy.type = "hidden";
      copy.name = pressed.name;
      copy.value = pressed.value;
      copy.setAttribute("data-busy-copy", "");
      form.appendChild(copy);
    }
    submitButtons(form).forEach(function (button) {
      if (!button.disabled) {
        button.disabled = true;
        button.setAttribute("data-busy-disabled", "");
      }
    });
    if (pressed) { busy(pressed); }
  });

  // htmx requests: aria-busy on the buttons htmx marked (.htmx-request) as this request's indicators.
  var inFlight = [];  // [{xhr, marked}]

  document.addEventListener("htmx:beforeSend", function (event) {
    var elt = event.detail.elt;
    var candidates = [elt].concat(Array.prototype.slice.call(elt.querySelectorAll(".htmx-request")));
    var marked = candidates.filter(function (el) {
      return el.classList.contains("htmx-request") && el.getAttribute("aria-busy") !== "true"
        && el.matches("button, input[type=submit], [role=button]");
    });
    marked.forEach(busy);
    if (marked.length) { inFlight.push({ xhr: event.detail.xhr, marked: marked }); }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    inFlight = inFlight.filter(function (request) {
      if (request.xhr !== event.detail.xhr) { return true; }
      request.marked.forEach(idle);
      return false;
    });
  });

  // htmx keeps a copy of the page for its Back button, taken before the new page is swapped in.
  document.addEventListener("htmx:beforeHistorySave", restoreAll);

  // Downloads.
  function fileName(response, link) {
    var header = response.headers.get("Content-Disposition") || "";
    var encoded = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
    if (encoded) {
      try { return decodeURIComponent(encoded[1].trim()); } catch (e) { /* the plain name below */ }
    }
    var plain = /filename\s*=\s*"?([^";]+)"?/i.exec(header);
    return plain ? plain[1].trim() : (link.getAttribute("download") || "download");
  }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("a[data-busy][href]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
        || event.shiftKey || event.altKey || typeof window.fetch !== "function") {
      return;  // a new tab or window, or an old browser: the browser's own way
    }
    event.preventDefault();
    if (link.getAttribute("aria-busy") === "true") { return; }
    busy(link);
    link.setAttribute("aria-disabled", "true");
    var done = function () { idle(link); link.removeAttribute("aria-disabled"); };
    var href = link.href;
    fetch(href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok || !/^\s*attachment/i.test(response.headers.get("Content-Disposition") || "")) {
          throw new Error("not a file");
        }
        return response.blob().then(function (blob) { return { blob: blob, name: fileName(response, link) }; });
      })
      .then(function (file) {
        done();
        save(file.blob, file.name);
      }, function () {
        done();
        window.location.assign(href);  // whatever the server says, shown as the plain link would
      });
  });

  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { restoreAll(); }
  });
})();
