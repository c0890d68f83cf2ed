// Reading the admin API. The admin token (when the server requires one) lives in this tab's
// sessionStorage and travels only in the Authorization header: never in a URL, where logs,
// history and Referer headers would keep it.

const TOKEN_KEY = "market_pipeline.admin_token";

export const ADMIN = "/api/v1/admin";

export class AuthError extends Error {}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export function pairPath(symbol, timeframe) {
  const query = new URLSearchParams({ symbol, timeframe });
  return `${ADMIN}/dashboard/pair?${query}`;
}

export async function getJson(path) {
  const headers = { Accept: "application/json" };
  const held = token.get();
  if (held) headers.Authorization = `Bearer ${held}`;
  const response = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  if (response.status === 401) throw new AuthError("the admin token was refused");
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`${path} answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${body.detail ?? body.error}`);
  return body;
}
