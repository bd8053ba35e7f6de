// Dates in the viewer's time zone: the server writes UTC into <time datetime>, this rewrites the text.
// Chart labels carry data-time: they show hours and minutes only.
document.querySelectorAll("[data-time]").forEach(function (el) {
  var at = new Date(el.getAttribute("data-time"));
  if (isNaN(at)) return;
  el.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
});
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var at = new Date(el.getAttribute("datetime"));
  if (isNaN(at)) return;
  var short = el.hasAttribute("data-short");
  el.textContent = short
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    : at.toLocaleString([], { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" });
  el.title = at.toISOString();
});
