/* The portal's confirm prompt: every `hx-confirm` asks in one styled <dialog> (Pico styles
   dialog > article) instead of the browser's window.confirm. The element may name the confirming
   button with `data-confirm-label` (default "Confirm"). Without JavaScript the forms post as plain
   forms. No inline script: CSP is 'self' only.

   Also: a request that replaces the whole page (a boosted form, or hx-target="body") shows the page
   the server answers even when it is a 422 (a form re-rendered with its errors), as a plain form
   post would; htmx swaps only 2xx by default. */
(function () {
  "use strict";

  var dialog = null;
  var pending = null;

  function build() {
    dialog = document.createElement("dialog");
    dialog.className = "confirm-dialog";
    dialog.setAttribute("aria-labelledby", "confirm-dialog-title");
    dialog.setAttribute("aria-describedby", "confirm-dialog-text");
    var article = document.createElement("article");
    var title = document.createElement("h2");
    title.id = "confirm-dialog-title";
    title.textContent = "Please confirm";
    var text = document.createElement("p");
    text.id = "confirm-dialog-text";
    var footer = document.createElement("footer");
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.value = "cancel";
    cancel.textContent = "Cancel";
    var ok = document.createElement("button");
    ok.type = "button";
    ok.value = "ok";
    ok.className = "confirm-dialog-ok";
    footer.appendChild(cancel);
    footer.appendChild(ok);
    article.appendChild(title);
    article.appendChild(text);
    article.appendChild(footer);
    dialog.appendChild(article);
    document.body.appendChild(dialog);

    // A double click on the button that opened the dialog lands its second click here: that click
    // (event.detail 2) neither answers nor dismisses the dialog, so double-clicking "Attempt card" or
    // "Mark as paid" still asks once and waits for the answer.
    cancel.addEventListener("click", function (event) { if (event.detail < 2) { dialog.close("cancel"); } });
    ok.addEventListener("click", function (event) { if (event.detail < 2) { dialog.close("ok"); } });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog && event.detail < 2) { dialog.close("cancel"); }  // a click on the backdrop
    });
    dialog.addEventListener("close", function () {
      var go = pending;
      pending = null;
      var opener = dialog.opener;
      dialog.opener = null;
      if (dialog.returnValue === "ok" && go) {
        go();
      } else if (opener && document.contains(opener)) {
        opener.focus();
      }
    });
  }

  function ask(question, label, opener, go) {
    if (!dialog || !document.body.contains(dialog)) { build(); }
    if (dialog.open) { dialog.close("cancel"); }
    dialog.querySelector("#confirm-dialog-text").textContent = question;
    dialog.querySelector(".confirm-dialog-ok").textContent = label || "Confirm";
    dialog.returnValue = "";
    dialog.opener = opener;
    pending = go;
    dialog.showModal();
    dialog.querySelector(".confirm-dialog-ok").focus();
  }

  document.addEventListener("htmx:confirm", function (event) {
    var detail = event.detail;
    if (!detail || !detail.question) { return; }  // no hx-confirm: htmx goes on as usual
    event.preventDefault();
    var elt = detail.elt;
    var holder = elt.closest("[data-confirm-label]");
    var opener = elt.tagName === "FORM" ? (elt.querySelector("[type=submit]") || elt) : elt;
    ask(detail.question, holder ? holder.getAttribute("data-confirm-label") : null, opener, function () {
      detail.issueRequest(true);  // true: htmx does not ask window.confirm again
    });
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.xhr && detail.xhr.status === 422 && (detail.boosted || detail.target === document.body)) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
})();
