/**
 * Stripe.js, loaded on demand from js.stripe.com (Stripe requires that origin: it is never bundled, and
 * only a page that takes a card loads it), and the Payment Element on a SetupIntent: the server opens
 * the intent (`POST /v1/billing/setup-intent`), the element collects the card inside Stripe's frames,
 * `confirmSetup` saves it, and the payment method id it returns pays for the subscription.
 */
import { api } from "./api";

export const STRIPE_JS = "https://js.stripe.com/v3/";

let loading: Promise<any> | null = null;

/** `window.Stripe`, after adding Stripe.js's script once; a failed load may be retried. */
export function loadStripeJs(): Promise<any> {
  loading ??= new Promise((resolve, reject) => {
    const found = (window as any).Stripe;
    if (found) { resolve(found); return; }
    const script = Object.assign(document.createElement("script"), { src: STRIPE_JS, async: true });
    script.onload = () => (window as any).Stripe ? resolve((window as any).Stripe) : reject(new Error("Stripe.js did not start"));
    script.onerror = () => { script.remove(); loading = null; reject(new Error("Stripe.js could not be loaded: check the connection and try again")); };
    document.head.appendChild(script);
  });
  return loading;
}

export interface CardForm {
  /** Saves the card typed into the element; resolves to its payment method id, or throws Stripe's message. */
  confirm(): Promise<string>;
  destroy(): void;
}

/** Open a SetupIntent and mount the Payment Element for it into `into`. */
export async function mountCardForm(publishableKey: string, into: HTMLElement): Promise<CardForm> {
  const [{ client_secret: clientSecret }, Stripe] = await Promise.all([
    api<{ client_secret: string }>("/v1/billing/setup-intent", { method: "POST" }),
    loadStripeJs(),
  ]);
  const stripe = Stripe(publishableKey);
  const elements = stripe.elements({ clientSecret, appearance: { theme: "night" } });
  const element = elements.create("payment");
  element.mount(into);
  return {
    async confirm() {
      const { error, setupIntent } = await stripe.confirmSetup({
        elements, redirect: "if_required", confirmParams: { return_url: location.href },
      });
      if (error) throw Object.assign(new Error(error.message ?? "The card was not accepted."), { stripe: error });
      const method = setupIntent?.payment_method;
      return typeof method === "string" ? method : method.id;
    },
    destroy() { element.destroy?.(); },
  };
}
