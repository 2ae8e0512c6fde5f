// Starts Swagger UI on /docs (a file, not an inline script: the page's Content-Security-Policy
// allows scripts from this origin only).
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    defaultModelsExpandDepth: 1,
    defaultModelExpandDepth: 2,
    displayRequestDuration: true,
    tryItOutEnabled: false,
  });
});
