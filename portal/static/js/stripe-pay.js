// The guest page's Stripe Payment Element. Everything it needs comes from the form's data-
// attributes (publishable key, the PaymentIntent's client secret, the return URL); the amount and
// the outcome are decided on the server. Stripe.js (https://js.stripe.com/v3/) is loaded first.
(function () {
  "use strict";
  var form = document.getElementById("stripe-payment-form");
  if (!form || typeof window.Stripe !== "function") {
    return;
  }
  var stripe = window.Stripe(form.dataset.publishableKey);
  var elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#payment-element");
  var button = document.getElementById("stripe-submit");
  var message = document.getElementById("stripe-error");

  // The button stays disabled and busy from the click until the server's check and Stripe's
  // confirmation have answered; a second submit meanwhile is ignored.
  var busy = false;
  var idle = function () {
    busy = false;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  };

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    busy = true;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    message.hidden = true;
    var done = function (text) {
      if (text) {
        message.textContent = text;
        message.hidden = false;
      }
      idle();
    };
    // Ask the server first whether this attempt still stands (the invoice may have been paid
    // another way since the page opened); only then let Stripe.js confirm it.
    var token = document.querySelector('input[name="csrf_token"]') || {};
    var csrf = form.dataset.csrfToken || token.value || "";
    fetch(form.dataset.checkUrl, { method: "POST", credentials: "same-origin",
                                   headers: { "X-CSRFToken": csrf, "Accept": "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          done(answer.body.message || "This payment can't go ahead. Reload the page.");
          return;
        }
        return stripe.confirmPayment({
          elements: elements,
          confirmParams: { return_url: form.dataset.returnUrl }
        }).then(function (result) {
          // Only reached when the confirmation failed before leaving the page (e.g. a declined card).
          done(result.error ? result.error.message : null);
        });
      })
      .catch(function () { done("We couldn't reach the server. Check your connection and try again."); });
  });

  // Back from Stripe's redirect (the page restored from the back/forward cache): ready again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { idle(); }
  });
})();
