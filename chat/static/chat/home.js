import { watchUnreadBadges } from "./badges.js";
import { paintAccountAvatar } from "./render.js";

paintAccountAvatar();
watchUnreadBadges();
