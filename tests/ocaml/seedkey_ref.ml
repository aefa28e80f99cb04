(* Reference keys for tests/test_seedkeys.py, made by the OCaml libraries the original
   Pasteur used (built against Debian's x509 0.16 and mirage-crypto 0.10; the original
   linked x509 1.0 and mirage-crypto 1.x/2.0, whose seeded key generation is the same).

   seedkey_ref SEED TYPE BITS   prints the PEM of X509.Private_key.generate ~seed ~bits TYPE
                                (what letsencrypt-mirage's gen_key and awa's Keys.of_string
                                do with a seed)
   seedkey_ref SEED awa-of-seed prints the PEM of the RSA key awa 0.0.1 to 0.0.4 (and its
                                master since March 2020) made in Keys.of_seed `Rsa SEED, the
                                original's --ssh-seed (the code of that function, as written there)
   seedkey_ref SEED bytes N,M,… prints, one line each, the hex of N, M, … bytes drawn in
                                turn from Mirage_crypto_rng.create ~seed (module Fortuna) *)
let hex s =
  String.concat "" (List.init (String.length s) (fun i -> Printf.sprintf "%02x" (Char.code s.[i])))

let () =
  let seed = Cstruct.of_string Sys.argv.(1) in
  match Sys.argv.(2) with
  | "bytes" ->
    let g = Mirage_crypto_rng.create ~seed (module Mirage_crypto_rng.Fortuna) in
    List.iter
      (fun n -> print_endline (hex (Cstruct.to_string (Mirage_crypto_rng.generate ~g (int_of_string n)))))
      (String.split_on_char ',' Sys.argv.(3))
  | "awa-of-seed" ->
    (* awa v0.0.4 lib/keys.ml of_seed, `Rsa case *)
    let g = Mirage_crypto_rng.(create ~seed (module Fortuna)) in
    let key = Mirage_crypto_pk.Rsa.generate ~g ~bits:2048 () in
    print_string (Cstruct.to_string (X509.Private_key.encode_pem (`RSA key)))
  | typ ->
    let typ = match X509.Key_type.of_string typ with Ok t -> t | Error (`Msg m) -> failwith m in
    let bits = int_of_string Sys.argv.(3) in
    let key = X509.Private_key.generate ~seed ~bits typ in
    print_string (Cstruct.to_string (X509.Private_key.encode_pem key))
