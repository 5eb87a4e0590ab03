// Release uploads with a progress bar. The file goes by XHR (fetch reports no upload progress) to
// Lode's own page route, which streams it on to the API; the CSRF token rides in the header htmx
// uses, read from <body hx-headers>. No API key is ever in the page.
(function () {
  var token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"];
  document.querySelectorAll("form.upload").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = form.querySelector("input[type=file]").files[0];
      if (!file) { return; }
      var bar = form.querySelector("progress");
      var status = form.querySelector(".upload-status");
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", form.dataset.action + encodeURIComponent(file.name));
      xhr.setRequestHeader("X-CSRF-Token", token);
      xhr.setRequestHeader("HX-Request", "true");  // a refusal comes back as its fragment, not a page
      xhr.setRequestHeader("Content-Type", /\.parquet$/i.test(file.name) ? "application/vnd.apache.parquet" : "text/csv");
      bar.hidden = false;
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); } };
      xhr.onload = function () {
        if (xhr.status === 201) {
          bar.value = 100;
          status.textContent = file.name + " uploaded.";
          window.location.reload();
        } else {
          var detail = xhr.responseText;
          try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (e) { /* an HTML page: keep its text */ }
          var doc = new DOMParser().parseFromString(detail, "text/html");
          status.textContent = "Refused: " + (doc.body ? doc.body.textContent.trim() : detail);
        }
      };
      xhr.onerror = function () { status.textContent = "The upload failed: the connection broke."; };
      xhr.send(file);
    });
  });
})();
