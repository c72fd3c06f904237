// The portal's "Add a payment method" with Stripe: the Payment Element in setup mode for the
// SetupIntent the server started. Everything it needs comes from the form's data- attributes
// (publishable key, the SetupIntent's client secret, the return URL); the server stores the
// method when Stripe sends the payer back to the return URL. Stripe.js is loaded first.
(function () {
  "use strict";
  var form = document.getElementById("stripe-setup-form");
  if (!form || typeof window.Stripe !== "function") {
    return;
  }
  var stripe = window.Stripe(form.dataset.publishableKey);
  var elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#setup-element");
  var button = document.getElementById("stripe-submit");
  var message = document.getElementById("stripe-error");

  // The button stays disabled and busy until Stripe's confirmation has answered; a second submit
  // meanwhile is ignored.
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
    stripe.confirmSetup({
      elements: elements,
      confirmParams: { return_url: form.dataset.returnUrl }
    }).then(function (result) {
      // Only reached when the confirmation failed before leaving the page (e.g. a declined card).
      if (result.error) {
        message.textContent = result.error.message;
        message.hidden = false;
      }
      idle();
    }, function () {
      message.textContent = "We couldn't reach the payment provider. Check your connection and try again.";
      message.hidden = false;
      idle();
    });
  });

  // Back from Stripe's redirect (the page restored from the back/forward cache): ready again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { idle(); }
  });
})();
