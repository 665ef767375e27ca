// Where CesiumJS finds its workers and assets: the copy installed from npm, served by twin.
window.CESIUM_BASE_URL = new URL("static/vendor/cesium/Build/Cesium/", new URL(".", location.href)).href;
