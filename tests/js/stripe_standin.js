/*
 * A STAND-IN FOR STRIPE.JS (https://js.stripe.com/v3/), served only by tests/test_web.py through
 * Playwright's routing, because this machine cannot reach js.stripe.com. It is not Stripe.js and never
 * ships: it implements just the calls web/src/stripe.ts makes, with Stripe's documented signatures and
 * result shapes, so the browser test can check that our page makes them right:
 *
 *   Stripe(publishableKey)
 *   stripe.elements({ clientSecret, appearance })      -> elements
 *   elements.create("payment")                         -> element (mount(domElement), destroy())
 *   stripe.confirmSetup({ elements, redirect: "if_required", confirmParams: { return_url } })
 *       -> { setupIntent: { id, status: "succeeded", payment_method } } | { error: { type, code, message } }
 *
 * The "Payment Element" here is one plain input (Stripe's own is a set of iframes). Card numbers follow
 * Stripe's test cards: 4242 4242 4242 4242 saves pm_card_visa (which the local Stripe server then
 * charges); 4000 0000 0000 0002 is declined with Stripe's card_error; anything else is incomplete.
 * Every call is recorded in window.__stripeStandIn for the test to read.
 */
(function () {
  "use strict";
  var record = (window.__stripeStandIn = { keys: [], elementsOptions: [], created: [], mounted: 0, confirmCalls: [] });
  var CARDS = { "4242424242424242": "pm_card_visa", "5555555555554444": "pm_card_mastercard" };
  var DECLINED = { "4000000000000002": "Your card was declined." };

  function intentId(secret) { return String(secret).split("_secret_")[0]; }

  window.Stripe = function Stripe(publishableKey) {
    if (!/^pk_(test|live)_/.test(String(publishableKey))) throw new Error("Invalid API Key provided: " + publishableKey);
    record.keys.push(publishableKey);
    return {
      elements: function (options) {
        if (!options || !/^seti_[^_]+_secret_/.test(options.clientSecret || "")) {
          throw new Error("IntegrationError: elements() needs a SetupIntent's clientSecret");
        }
        record.elementsOptions.push({ clientSecret: options.clientSecret, appearance: options.appearance || null });
        var input = null;
        var elements = {
          _clientSecret: options.clientSecret,
          _number: function () { return input ? input.value.replace(/\s+/g, "") : ""; },
          create: function (type) {
            record.created.push(type);
            if (type !== "payment") throw new Error("IntegrationError: this stand-in only creates the payment element");
            return {
              mount: function (domElement) {
                var label = document.createElement("label");
                label.textContent = "Card number";
                input = document.createElement("input");
                input.inputMode = "numeric";
                input.autocomplete = "cc-number";
                label.appendChild(input);
                domElement.appendChild(label);
                record.mounted += 1;
              },
              destroy: function () { if (input && input.parentNode) input.parentNode.remove(); input = null; },
            };
          },
        };
        return elements;
      },
      confirmSetup: function (options) {
        var elements = options && options.elements;
        record.confirmCalls.push({
          clientSecret: elements && elements._clientSecret,
          redirect: options && options.redirect,
          returnUrl: options && options.confirmParams && options.confirmParams.return_url,
        });
        var number = elements ? elements._number() : "";
        return new Promise(function (resolve) {
          setTimeout(function () {
            if (CARDS[number]) {
              resolve({ setupIntent: { id: intentId(elements._clientSecret), object: "setup_intent", status: "succeeded",
                                       payment_method: CARDS[number] } });
            } else if (DECLINED[number]) {
              resolve({ error: { type: "card_error", code: "card_declined", decline_code: "generic_decline",
                                 message: DECLINED[number] } });
            } else {
              resolve({ error: { type: "validation_error", code: "incomplete_number", message: "Your card number is incomplete." } });
            }
          }, 10);
        });
      },
    };
  };
})();
