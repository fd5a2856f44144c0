/** The shell: header with search-as-you-type and navigation, the routed page, the player bar. */
import { useEffect, useState } from "preact/hooks";
import { api, onAuthChange, signedIn, signOut } from "./api";
import { PlayerBar } from "./playerbar";
import { AuthPage } from "./pages/auth";
import { AccountPage } from "./pages/account";
import { StatementsPage, SubscriptionPage } from "./pages/billing";
import { AlbumPage, ArtistPage, HomePage, LibraryPage, TrackPage } from "./pages/catalog";
import { DiscoverPage, RadioPage } from "./pages/discover";
import { PlaylistPage, PlaylistsPage } from "./pages/playlists";
import { RoomPage, RoomsPage } from "./pages/rooms";
import { SearchPage } from "./pages/search";
import { UploadPage } from "./pages/upload";
import { realtime } from "./realtime";
import { Link, navigate, useRoute } from "./router";

function useMe(): [any, boolean] {
  const [me, setMe] = useState<any>(null);
  const [auth, setAuth] = useState(signedIn());
  useEffect(() => onAuthChange(() => setAuth(signedIn())), []);
  useEffect(() => {
    if (!auth) { setMe(null); return; }
    api("/v1/me").then(setMe).catch(() => setMe(null));
  }, [auth]);
  return [me, auth];
}

export function App() {
  const route = useRoute();
  const [me, auth] = useMe();
  const [path, query] = route.split("?");
  const q = new URLSearchParams(query ?? "").get("q") ?? "";

  const onSearch = (e: Event) => {
    const value = (e.target as HTMLInputElement).value;
    const to = `/search?q=${encodeURIComponent(value)}`;
    navigate(to, { replace: path === "/search", keepFocus: true });
  };

  let page;
  if (!auth) page = <AuthPage />;
  else if (!me) page = <p aria-busy="true">Loading…</p>;
  else {
    const [, first, second] = path.split("/");
    if (first === "search") page = <SearchPage q={q} />;
    else if (first === "track" && second) page = <TrackPage id={second} />;
    else if (first === "artist" && second) page = <ArtistPage id={second} />;
    else if (first === "album" && second) page = <AlbumPage id={second} />;
    else if (first === "upload") page = <UploadPage me={me} />;
    else if (first === "rooms") page = <RoomsPage />;
    else if (first === "playlists") page = <PlaylistsPage />;
    else if (first === "library") page = <LibraryPage />;
    else if (first === "account") page = <AccountPage me={me} />;
    else if (first === "discover") page = <DiscoverPage me={me} />;
    else if (first === "radio" && second) page = <RadioPage id={second} />;
    else if (first === "subscription") page = <SubscriptionPage />;
    else if (first === "statements") page = <StatementsPage />;
    else if (first === "playlist" && second) page = <PlaylistPage id={second} me={me} />;
    else if (first === "room" && second) page = <RoomPage id={second} me={me} />;
    else page = <HomePage me={me} />;
  }

  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <Link to="/" class="brand" aria-label="VerseFlow home">VerseFlow</Link>
        {auth && (
          <>
            <input type="search" class="search" aria-label="Search tracks, artists, albums and playlists"
                   placeholder="Search" value={path === "/search" ? q : undefined} onInput={onSearch} />
            <nav aria-label="Main">
              <Link to="/discover">Discover</Link>
              <Link to="/library">Library</Link>
              <Link to="/playlists">Playlists</Link>
              <Link to="/upload">Upload</Link>
              <Link to="/rooms">Rooms</Link>
              <Link to="/account">Account</Link>
              <button class="link" onClick={() => { realtime.disconnect(); void signOut(); navigate("/"); }}>
                Sign out</button>
            </nav>
          </>
        )}
      </header>
      <main id="main" tabIndex={-1}>{page}</main>
      <PlayerBar />
    </>
  );
}
