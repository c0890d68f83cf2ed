// Times and durations as people read them. Server timestamps are ISO 8601 UTC ending in Z.

export function age(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function stamp(iso) {
  return iso ? iso.replace("T", " ").replace("Z", " UTC") : "never";
}

export function when(iso) {
  return iso ? `${stamp(iso)} (${age(iso)})` : "never";
}

export function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

export function percent(value) {
  return value === null || value === undefined ? "n/a" : `${value.toFixed(1)} %`;
}
