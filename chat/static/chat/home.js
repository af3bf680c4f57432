// The rooms page: the live room list over one socket (badges.js), and creating or browsing rooms.

import { RoomList } from "./badges.js";
import { ConnectionBanner } from "./connection.js";
import { paintAccountAvatar } from "./render.js";
import { openBrowseRooms, openCreateRoom } from "./rooms.js";
import { ChatSocket } from "./socket.js";
import { reportTimezone } from "./timezone.js";

paintAccountAvatar();
reportTimezone();
const socket = new ChatSocket({
  onFrame: (frame) => roomList.onFrame(frame),
  onStatus: (status, detail) => connection.show(status, detail),
});
const connection = new ConnectionBanner({ banner: document.getElementById("banner"), retry: () => socket.retryNow() });
const roomList = new RoomList({ socket, me: document.body.dataset.username ?? "" });
roomList.start();
socket.connect(); // also with no rooms yet: a room one is added to arrives as a `read` frame
document.getElementById("room-create")?.addEventListener("click", openCreateRoom);
document.getElementById("room-browse")?.addEventListener("click", openBrowseRooms);
