// The seed's socketIoClient.html script, rendering text safely.
var iosocket = null;

function show(text) {
  var chatroom = document.getElementById("chatroom");
  var line = document.createElement("div");
  line.className = "line";
  line.textContent = text; // text, never markup
  chatroom.appendChild(line);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function say() {
  iosocket.send(document.forms.myform.sayinput.value);
  document.forms.myform.sayinput.value = "";
}

window.onload = function () {
  var server = new URLSearchParams(location.search).get("server") || location.origin + "/";
  iosocket = io.connect(server);
  iosocket.on("connect", function () {
    setStatus("connected");
    iosocket.send("hello,我是ioclient");
  });
  iosocket.on("message", function (message) {
    show(String(message));
  });
  iosocket.on("connect_error", function (err) {
    setStatus("connect_error: " + err.message);
  });
  iosocket.on("disconnect", function () {
    setStatus("disconnected");
  });
  document.getElementById("say").addEventListener("click", say);
};
