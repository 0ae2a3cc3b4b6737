// The organiser dashboard: draws the figures of /api/events/{id}/dashboard as SVG charts
// and tables, first from the JSON embedded in the page, then again from each message of
// the Server-Sent Events stream. No libraries: the page must work without a network.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var RATING_COLOURS = {
    did_not_take_place: "#9e9e9e",
    no_interest: "#e6862e",
    informative_no_cooperation: "#8fc1e3",
    cooperation_possible: "#2e8540"
  };
  var TYPE_LABELS = {
    cluster: "Clusters",
    business: "Businesses",
    research: "Research organisations",
    other: "Other organisations"
  };

  function words(key) {
    return String(key).replace(/_/g, " ").replace(/2/g, " to ");
  }

  function slug(text) {
    return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  // An HTML element: el("p", {class: "x"}, "text", child, ...).
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, Array.prototype.slice.call(arguments, 2));
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (name) {
      if (attrs[name] !== null && attrs[name] !== undefined) {
        node.setAttribute(name, String(attrs[name]));
      }
    });
  }

  function append(node, children) {
    children.forEach(function (child) {
      if (child === null || child === undefined) return;
      if (Array.isArray(child)) return append(node, child);
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
  }

  function fill(id, content) {
    var target = document.getElementById(id);
    target.replaceChildren();
    append(target, [content]);
  }

  // -- charts -------------------------------------------------------------------------

  // Horizontal bars, one row per entry, a light bar for `total` and a dark one for `part`
  // over it, the figures written beside them (`single`: one bar, `total`, per entry).
  function pairedBars(opts) {
    var single = Boolean(opts.single);
    var rows = opts.rows.slice(0, opts.limit || opts.rows.length);
    var labelWidth = 190, barWidth = 260, rowHeight = 22, top = 4;
    var max = Math.max.apply(null, [1].concat(rows.map(function (r) { return r.total; })));
    var height = top + rows.length * rowHeight + 4;
    var summary = opts.title + ": " + (rows.length ? rows.map(function (r) {
      return single ? r.label + " " + r.total
        : r.label + " " + r.total + " " + opts.totalName + ", " + r.part + " " + opts.partName;
    }).join("; ") : "none");
    var chart = svg("svg", {
      viewBox: "0 0 " + (labelWidth + barWidth + 90) + " " + Math.max(height, 24),
      width: labelWidth + barWidth + 90, role: "img", "aria-label": summary
    });
    rows.forEach(function (r, i) {
      var y = top + i * rowHeight;
      var whole = (r.total / max) * barWidth, part = (r.part / max) * barWidth;
      chart.appendChild(svg("g", {
        "data-testid": opts.testid + "-" + slug(r.key), "data-total": r.total, "data-part": r.part
      },
        svg("text", {x: labelWidth - 6, y: y + 15, "text-anchor": "end", class: "label"},
          r.label.length > 28 ? r.label.slice(0, 27) + "…" : r.label, svg("title", {}, r.label)),
        svg("rect", {x: labelWidth, y: y + 3, width: Math.max(whole, 1), height: rowHeight - 6,
          class: "bar-total"}),
        single ? null : svg("rect", {x: labelWidth, y: y + 3, width: part,
          height: rowHeight - 6, class: "bar-part"}),
        svg("text", {x: labelWidth + whole + 6, y: y + 15, class: "value"},
          single ? String(r.total) : r.part + " / " + r.total)));
    });
    if (!rows.length) {
      chart.appendChild(svg("text", {x: 0, y: 16, class: "label"}, "none yet"));
    }
    var more = opts.rows.length - rows.length;
    return [
      el(opts.captionTag || "figcaption", {}, opts.title, single ? null :
        el("span", {class: "legend"},
          el("span", {class: "swatch bar-part"}), " " + opts.partName + " ",
          el("span", {class: "swatch bar-total"}), " " + opts.totalName)),
      chart,
      more > 0 ? el("p", {class: "note"}, "and " + more + " more") : null
    ];
  }

  function applicationRows(entries, labelOf) {
    return entries.map(function (e) {
      return {key: e.key, label: labelOf(e), total: e.applied, part: e.approved};
    });
  }

  // One funnel per meeting type: centred bars narrowing from requested to held.
  function funnelChart(row, stages, testid) {
    var width = 260, rowHeight = 30;
    var max = Math.max(1, row[stages[0]]);
    var summary = row.meeting_type + ": " + stages.map(function (s) {
      return row[s] + " " + s;
    }).join(", ");
    var chart = svg("svg", {
      viewBox: "0 0 " + (width + 170) + " " + (stages.length * rowHeight + 4),
      width: width + 170, role: "img", "aria-label": summary
    });
    stages.forEach(function (stage, i) {
      var w = Math.max((Math.min(row[stage], max) / max) * width, row[stage] ? 2 : 0);
      var y = 2 + i * rowHeight;
      chart.appendChild(svg("g", {"data-testid": testid + "-" + stage, "data-value": row[stage]},
        svg("text", {x: 80, y: y + 19, "text-anchor": "end", class: "label"}, stage),
        svg("rect", {x: 90 + (width - w) / 2, y: y + 3, width: w, height: rowHeight - 6,
          class: "stage stage-" + i}),
        svg("text", {x: 90 + width + 8, y: y + 19, class: "value"}, String(row[stage]))));
    });
    return el("figure", {class: "funnel", "data-testid": testid},
      el("figcaption", {}, words(row.meeting_type)), chart);
  }

  // Stacked horizontal bars: one per meeting type, one segment per rating.
  function stackedRatings(feedback) {
    var width = 300, rowHeight = 26, labelWidth = 170;
    var rows = feedback.by_meeting_type;
    var totals = rows.map(function (r) {
      return feedback.ratings.reduce(function (sum, k) { return sum + r[k]; }, 0);
    });
    var max = Math.max.apply(null, [1].concat(totals));
    var chart = svg("svg", {
      viewBox: "0 0 " + (labelWidth + width + 50) + " " + (rows.length * rowHeight + 4),
      width: labelWidth + width + 50, role: "img",
      "aria-label": "Ratings by meeting type: " + rows.map(function (r) {
        return words(r.meeting_type) + " " + feedback.ratings.map(function (k) {
          return r[k] + " " + words(k);
        }).join(", ");
      }).join("; ")
    });
    rows.forEach(function (r, i) {
      var y = 2 + i * rowHeight, x = labelWidth;
      var group = svg("g", {"data-testid": "feedback-" + slug(r.meeting_type),
        "data-total": totals[i]});
      group.appendChild(svg("text", {x: labelWidth - 6, y: y + 17, "text-anchor": "end",
        class: "label"}, words(r.meeting_type)));
      feedback.ratings.forEach(function (k) {
        var w = (r[k] / max) * width;
        if (w > 0) {
          group.appendChild(svg("rect", {x: x, y: y + 3, width: w, height: rowHeight - 6,
            fill: RATING_COLOURS[k]}, svg("title", {}, words(k) + ": " + r[k])));
        }
        x += w;
      });
      group.appendChild(svg("text", {x: x + 6, y: y + 17, class: "value"}, String(totals[i])));
      chart.appendChild(group);
    });
    var legend = el("p", {class: "legend"}, feedback.ratings.map(function (k) {
      return el("span", {class: "legend-item"},
        el("span", {class: "swatch", style: "background:" + RATING_COLOURS[k]}),
        " " + words(k) + " " + feedback.by_rating[k]);
    }));
    return [
      el("figcaption", {}, "Ratings: ",
        el("strong", {"data-testid": "feedback-responses"}, String(feedback.responses)),
        " from " + feedback.meetings_rated + " meetings"),
      chart, legend
    ];
  }

  function simpleBars(title, entries, testid) {
    return pairedBars({
      title: title, single: true, captionTag: "h3", testid: testid,
      rows: Object.keys(entries).map(function (k) {
        return {key: k, label: words(k), total: entries[k], part: entries[k]};
      })
    });
  }

  // -- sections -----------------------------------------------------------------------

  function tiles(data) {
    var t = data.totals;
    var list = [
      ["applied", "applications"], ["approved", "approved"],
      ["meetings_requested", "meetings requested"], ["meetings_accepted", "accepted"],
      ["meetings_placed", "placed"], ["meetings_held", "held"],
      ["notifications_sent", "notifications sent"],
      ["notifications_failed", "notifications failed"], ["dead_letters", "dead letters"]
    ];
    return list.map(function (item) {
      var bad = (item[0] === "notifications_failed" || item[0] === "dead_letters") && t[item[0]];
      return el("div", {class: "tile" + (bad ? " alert" : ""), "data-testid": "tile-" + item[0]},
        el("span", {class: "big", id: "value-" + item[0], "data-testid": "value-" + item[0]},
          String(t[item[0]])),
        el("span", {class: "what"}, item[1]));
    });
  }

  function agendaTable(day, tables, testid) {
    var head = el("tr", {}, el("th", {scope: "col"}, "Time"),
      tables.map(function (t) { return el("th", {scope: "col"}, "Table " + t); }),
      el("th", {scope: "col", class: "online"}, "Online"));
    var body = day.slots.map(function (slot) {
      return el("tr", {},
        el("th", {scope: "row"}, slot.start + "–" + slot.end),
        tables.map(function (t) {
          var m = slot.tables[String(t)];
          return el("td", {
            "data-testid": testid + "-" + slot.start.replace(":", "") + "-t" + t,
            class: m ? "meeting " + slug(m.meeting_type) + (m.held ? "" : " not-held") : "free",
            title: m ? words(m.meeting_type) + ": " + m.organisations.join(" and ") : null
          }, m ? m.organisations.join(" · ") : "");
        }),
        el("td", {class: "online", "data-testid": testid + "-" + slot.start.replace(":", "") + "-online"},
          slot.online.map(function (m) {
            return el("div", {class: "meeting " + slug(m.meeting_type),
              title: words(m.meeting_type)}, m.organisations.join(" · "));
          })));
    });
    return el("div", {class: "scroll"},
      el("table", {class: "agenda", "data-testid": testid},
        el("caption", {}, day.date),
        el("thead", {}, head), el("tbody", {}, body)));
  }

  function agenda(a) {
    var summary = el("p", {class: "counters"},
      el("span", {}, el("strong", {"data-testid": "agenda-placed"}, String(a.placed)), " placed"),
      el("span", {}, el("strong", {"data-testid": "agenda-at-tables"}, String(a.at_tables)),
        " at tables"),
      el("span", {}, el("strong", {"data-testid": "agenda-online"}, String(a.online)), " online"),
      el("span", {}, el("strong", {"data-testid": "agenda-unplaced"}, String(a.unplaced)),
        " accepted, not placed"),
      el("span", {class: "note"}, "times in " + a.time_zone));
    if (!a.days.length) {
      return [summary, el("p", {class: "note"}, "No slots yet.")];
    }
    return [summary].concat(a.days.map(function (day) {
      return agendaTable(day, a.tables, "agenda-" + day.date);
    }));
  }

  function countTable(title, rows, testid) {
    return el("table", {class: "counts", "data-testid": testid},
      el("caption", {}, title),
      el("thead", {}, el("tr", {}, el("th", {scope: "col"}, ""),
        el("th", {scope: "col"}, "sent"), el("th", {scope: "col"}, "failed"))),
      el("tbody", {}, rows.length ? rows.map(function (r) {
        return el("tr", {"data-testid": testid + "-" + slug(r.key)},
          el("th", {scope: "row"}, words(r.key)),
          el("td", {}, String(r.sent)), el("td", {class: r.failed ? "bad" : ""}, String(r.failed)));
      }) : el("tr", {}, el("td", {colspan: 3, class: "note"}, "none yet"))));
  }

  function notifications(n) {
    return [
      el("p", {class: "counters"},
        el("span", {}, el("strong", {"data-testid": "notifications-sent"}, String(n.sent)), " sent"),
        el("span", {class: n.failed ? "bad" : ""},
          el("strong", {"data-testid": "notifications-failed"}, String(n.failed)), " failed")),
      el("div", {class: "charts"},
        countTable("By message kind", n.by_kind, "notifications-kind"),
        countTable("By channel", n.by_channel, "notifications-channel"))
    ];
  }

  function letterList(letters, testid) {
    if (!letters.latest.length) return el("p", {class: "note"}, "none");
    return el("table", {class: "counts", "data-testid": testid + "-latest"},
      el("thead", {}, el("tr", {}, ["when", "topic", "consumer", "error", "event type"].map(
        function (h) { return el("th", {scope: "col"}, h); }))),
      el("tbody", {}, letters.latest.map(function (d) {
        return el("tr", {},
          el("td", {}, new Date(d.at).toLocaleString()),
          el("td", {}, d.topic),
          el("td", {}, d.consumer || "?"),
          el("td", {}, d.error_type || "?"),
          el("td", {}, d.event_type || "unreadable"));
      })));
  }

  function deadLetters(d) {
    return [
      el("p", {class: "counters"},
        el("span", {class: d.event.count ? "bad" : ""},
          el("strong", {"data-testid": "dead-letters-event"}, String(d.event.count)),
          " about this event"),
        el("span", {},
          el("strong", {"data-testid": "dead-letters-platform"}, String(d.platform.count)),
          " platform-wide (no event of their own)")),
      el("h3", {}, "Latest about this event"), letterList(d.event, "dead-letters-event"),
      el("h3", {}, "Latest platform-wide"), letterList(d.platform, "dead-letters-platform")
    ];
  }

  function outcomes(o) {
    return [
      el("figcaption", {}, "Outcomes: ",
        el("strong", {"data-testid": "outcomes-reports"}, String(o.reports)), " reports, ",
        el("strong", {"data-testid": "outcomes-agreements"}, String(o.agreements)),
        " meetings with an agreement"),
      simpleBars("By outcome", o.by_outcome, "outcome"),
      simpleBars("Agreements by kind", o.agreements_by_kind, "agreement")
    ];
  }

  var OFFICE_COLUMNS = [
    ["registrations", "registrations"], ["approved", "approved"],
    ["meetings_requested", "meetings requested"], ["meetings_held", "meetings held"],
    ["feedback_responses", "feedback responses"], ["agreements", "agreements"]
  ];

  function byOffice(rows) {
    if (!rows || !rows.length) return el("p", {class: "note"}, "No support offices.");
    return el("div", {class: "scroll"}, el("table", {class: "counts", "data-testid": "by-office"},
      el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "Support office"),
        OFFICE_COLUMNS.map(function (c) { return el("th", {scope: "col"}, c[1]); }))),
      el("tbody", {}, rows.map(function (r) {
        var id = r.office_id || "none";
        return el("tr", {"data-testid": "office-" + slug(id)},
          el("th", {scope: "row"}, r.name + (r.office_id && r.office_id !== r.name ?
            " (" + r.office_id + ")" : "")),
          OFFICE_COLUMNS.map(function (c) {
            return el("td", {"data-testid": "office-" + slug(id) + "-" + c[0]}, String(r[c[0]]));
          }));
      }))));
  }

  function render(data) {
    var a = data.applications;
    document.getElementById("title").textContent = data.event.name;
    var office = document.getElementById("office");
    office.textContent = data.office ?
      "Support office: " + data.office.name + " (" + data.office.office_id + "): its participants only" :
      "";
    document.getElementById("offices-section").hidden = !data.by_office;
    if (data.by_office) fill("offices", byOffice(data.by_office));
    fill("tiles", tiles(data));
    fill("applications-country", pairedBars({
      title: "By country", totalName: "applied", partName: "approved",
      testid: "country", rows: applicationRows(a.by_country, function (e) {
        return e.label + " (" + e.key + ")";
      })
    }));
    fill("applications-type", pairedBars({
      title: "By organisation type", totalName: "applied", partName: "approved",
      testid: "type", rows: applicationRows(a.by_type, function (e) {
        return TYPE_LABELS[e.key] || e.key;
      })
    }));
    fill("applications-sector", pairedBars({
      title: "By sector", totalName: "applied", partName: "approved", limit: 15,
      testid: "sector", rows: applicationRows(a.by_sector, function (e) { return e.key; })
    }));
    fill("funnel", [funnelChart(Object.assign({meeting_type: "All meetings"}, data.funnel.total),
      data.funnel.stages, "funnel-all")].concat(data.funnel.by_type.filter(function (row) {
      return row.requested || row.accepted;
    }).map(function (row) {
      return funnelChart(row, data.funnel.stages, "funnel-" + slug(row.meeting_type));
    })));
    fill("agenda", agenda(data.agenda));
    fill("notifications", notifications(data.notifications));
    fill("dead-letters", deadLetters(data.dead_letters));
    fill("feedback", stackedRatings(data.feedback));
    fill("outcomes", outcomes(data.outcomes));
    var renders = Number(document.body.dataset.renders || 0) + 1;
    document.body.dataset.renders = String(renders);
    document.getElementById("updated").textContent =
      "· figures of " + new Date(data.generated_at).toLocaleTimeString();
  }

  function status(text, state) {
    var node = document.getElementById("live");
    node.textContent = text;
    node.className = state;
    document.body.dataset.live = state;
  }

  render(JSON.parse(document.getElementById("dashboard-data").textContent));
  if (!window.EventSource) {
    status("no live updates in this browser: reload to refresh", "off");
    return;
  }
  var source = new EventSource(document.body.dataset.stream);
  source.addEventListener("open", function () { status("live", "live"); });
  source.addEventListener("error", function () { status("reconnecting…", "off"); });
  source.addEventListener("dashboard", function (message) {
    status("live", "live");
    render(JSON.parse(message.data));
  });
})();
