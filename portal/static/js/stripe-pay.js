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

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    message.hidden = true;
    stripe.confirmPayment({
      elements: elements,
      confirmParams: { return_url: form.dataset.returnUrl }
    }).then(function (result) {
      // Only reached when the confirmation failed before leaving the page (e.g. a declined card).
      if (result.error) {
        message.textContent = result.error.message;
        message.hidden = false;
      }
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  });
})();
