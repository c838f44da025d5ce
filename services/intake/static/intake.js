// dooralert staff pages, progressive enhancement: every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  // The report form: show the guidance for the document chosen, count notes characters.
  function enhanceForm() {
    var doc = document.getElementById("document");
    var guidance = document.getElementById("guidance");
    if (doc && guidance) {
      var title = document.getElementById("guidance-title");
      var pick = guidance.querySelector(".pick");
      var show = function () {
        var items = guidance.querySelectorAll(".doc");
        var chosen = false;
        for (var i = 0; i < items.length; i++) {
          var on = items[i].getAttribute("data-document") === doc.value;
          items[i].classList.toggle("current", on);
          chosen = chosen || on;
        }
        if (pick) pick.hidden = chosen;
        if (title) title.textContent = title.getAttribute("data-one");
      };
      doc.addEventListener("change", show);
      show();
    }
    var notes = document.getElementById("notes");
    var count = document.getElementById("notes-count");
    if (notes && count) {
      var max = parseInt(notes.getAttribute("data-max"), 10) || 500;
      var update = function () {
        // As the server counts: one per line break (it turns CRLF into LF), per character
        // (not UTF-16 unit), surrounding spaces trimmed.
        var text = notes.value.replace(/\r\n?/g, "\n").trim();
        var left = max - Array.from(text).length;
        var n = Math.abs(left);
        // "1 character left", "2 characters left": the words for one and for more.
        var words = (left >= 0 ? "data-left" : "data-over") + (n === 1 ? "-one" : "");
        count.textContent = count.getAttribute(words).replace("{n}", String(n));
        count.classList.toggle("low", left < 50);
      };
      notes.addEventListener("input", update);
      update();
    }
    // Typing a door of one's own chooses the "other door" tile; choosing it goes to the text.
    var place = document.getElementById("location");
    var other = document.getElementById("door-other");
    if (place && other) {
      place.addEventListener("input", function () { if (place.value) other.checked = true; });
      other.addEventListener("change", function () { if (other.checked) place.focus(); });
    }
    // The error summary takes focus; its links go to the field (opening "more details").
    var summary = document.getElementById("error-summary");
    if (summary) {
      summary.focus();
      summary.addEventListener("click", function (e) {
        var link = e.target.closest("a[href^='#']");
        var field = link && document.getElementById(link.getAttribute("href").slice(1));
        if (!field) return;
        e.preventDefault();
        var more = field.closest("details");
        if (more) more.open = true;
        field.focus();
      });
    }
    var form = document.getElementById("report");
    if (form) {
      // One press sends one alert; the server also drops a repeated submission.
      form.addEventListener("submit", function () {
        var button = form.querySelector("button[type=submit]");
        if (button) setTimeout(function () { button.disabled = true; }, 0);
      });
    }
    // The follow-up buttons (and their "Yes"): one press sends one update. Disabled after
    // the form has gone, so the pressed button's value is sent; the server also records a
    // repeated submission once (its submission id).
    var followups = document.querySelectorAll("form.followup, form.confirm");
    for (var f = 0; f < followups.length; f++) {
      followups[f].addEventListener("submit", function (e) {
        var buttons = e.currentTarget.querySelectorAll("button[type=submit]");
        setTimeout(function () {
          for (var b = 0; b < buttons.length; b++) buttons[b].disabled = true;
        }, 0);
      });
    }
  }

  // The incident page: replace the status section whenever the server sends a new one.
  function enhanceIncident() {
    var live = document.getElementById("live");
    if (!live || !window.EventSource) return;
    var url = live.getAttribute("data-events");
    if (!url) return;
    var source = new EventSource(url);
    var badge = document.querySelector(".live-badge");
    var followup = live.getAttribute("data-followup");
    // Something typed into the follow-up form and not sent yet: never thrown away by a reload.
    var typed = false;
    var forms = document.querySelectorAll("form.followup");
    for (var i = 0; i < forms.length; i++) {
      forms[i].addEventListener("input", function () { typed = true; });
      forms[i].addEventListener("change", function () { typed = true; });
    }
    source.addEventListener("status", function (e) {
      var msg = JSON.parse(e.data);
      // Resolved, reopened or the agents gone by someone else's press: the follow-up
      // buttons shown no longer apply, so the page comes again with the right ones -
      // unless the person has typed something, which a reload would lose: then say so.
      if (followup && msg.followup && msg.followup !== followup && forms.length) {
        var stale = document.getElementById("followup-stale");
        if (typed && stale) {
          stale.hidden = false;
        } else {
          source.close();
          window.location.reload();
          return;
        }
      }
      live.innerHTML = msg.html;
      live.setAttribute("data-event-count", String(msg.event_count));
      if (badge) badge.hidden = false;
    });
    source.addEventListener("error", function () {
      if (badge) badge.hidden = true;
    });
  }

  // Back to a page the browser kept (bfcache): its buttons pressed before work again.
  window.addEventListener("pageshow", function (e) {
    if (!e.persisted) return;
    var pressed = document.querySelectorAll("form button[type=submit][disabled]");
    for (var i = 0; i < pressed.length; i++) pressed[i].disabled = false;
  });

  ready(function () {
    enhanceForm();
    enhanceIncident();
  });
})();
