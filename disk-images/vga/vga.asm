; vga: lockstep's VGA text-mode test kernel (nasm -f bin), booted by v86 without a BIOS.
;
; It prints only to the VGA text screen (0xB8000, 80x25, colour attributes), never to a serial
; port: a guest whose only console is the screen. It draws a title bar, a line in each of the
; 16 colours, then echoes what is typed on the PS/2 keyboard (scancode set 1, polled from the
; 8042): letters, digits, space, Enter (a new line) and Backspace, and moves the hardware cursor
; after the last character. F1 switches to a graphics mode (Bochs VBE: 320x200, 32 bits per pixel,
; the linear framebuffer at 0xE0000000, where v86 puts it) and draws 16 vertical bars in the CGA
; colours, black to white, 20 pixels each; keys are ignored from then on. Its screen depends only on
; the keys it was given.

bits 32
org 0x100000

MB_MAGIC    equ 0x1BADB002
MB_FLAGS    equ 0x00010000              ; the header carries load addresses (a.out kludge)
SCREEN      equ 0xB8000
COLS        equ 80
ROWS        equ 25
TYPE_ATTR   equ 0x0F                    ; white on black
TYPE_ROW    equ 20                      ; typed text starts here
LFB         equ 0xE0000000              ; v86's VBE linear framebuffer
GFX_W       equ 320
GFX_H       equ 200

header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd header                           ; header_addr
    dd header                           ; load_addr
    dd load_end                         ; load_end_addr
    dd bss_end                          ; bss_end_addr
    dd start                            ; entry_addr

start:
    cli
    mov esp, stack_top
    cld
    ; map the VGA's memory at 0xB8000 (graphics controller register 6: memory map B8000-BFFFF,
    ; odd/even addressing, text mode), as a BIOS setting mode 3 would; there is no BIOS here
    mov dx, 0x3CE
    mov al, 6
    out dx, al
    inc dx
    mov al, 0x0E
    out dx, al
    ; clear the screen: blanks, light grey on blue
    mov edi, SCREEN
    mov ecx, COLS * ROWS
    mov ax, 0x1720
    rep stosw
    ; the title bar, black on cyan
    mov edi, SCREEN
    mov ecx, COLS
    mov ax, 0x3020
    rep stosw
    mov esi, title
    mov edi, SCREEN + 2
    mov ah, 0x30
    call puts
    ; one line per colour: "colour N" in attribute N on black (0 on light grey)
    xor ebx, ebx
.colours:
    mov eax, ebx
    add eax, 2                          ; rows 2..17
    imul eax, COLS * 2
    lea edi, [SCREEN + eax + 4]
    mov esi, colour
    mov ah, bl
    test bl, bl
    jnz .fg
    mov ah, 0x70
.fg:
    call puts
    mov al, bl
    call hexdigit
    stosw
    inc ebx
    cmp ebx, 16
    jb .colours
    mov esi, prompt
    mov edi, SCREEN + (TYPE_ROW - 1) * COLS * 2
    mov ah, 0x1E
    call puts
    ; typed text from row TYPE_ROW, column 0
    mov dword [pos], TYPE_ROW * COLS
    call cursor
    ; the 8042 (no BIOS did it): command byte 0x45 (translate to set 1, keyboard on), then the
    ; keyboard's own "enable scanning" (0xF4), whose 0xFA acknowledgement is eaten; interrupts stay
    ; off (cli): this kernel polls
    mov al, 0x60
    out 0x64, al
    mov al, 0x45
    out 0x60, al
    mov al, 0xF4
    out 0x60, al
.ack:
    in al, 0x64
    test al, 1
    jz .ack
    in al, 0x60
.loop:
    in al, 0x64
    test al, 1
    jz .loop
    in al, 0x60
    test al, 0x80                       ; a key released: nothing to do
    jnz .loop
    movzx eax, al
    cmp al, 0x3B                        ; F1
    je .graphics
    cmp al, 0x1C                        ; Enter
    je .enter
    cmp al, 0x0E                        ; Backspace
    je .backspace
    cmp eax, keymap_end - keymap
    jae .loop
    mov al, [keymap + eax]
    test al, al
    jz .loop
    mov ah, TYPE_ATTR
    mov edx, [pos]
    mov [SCREEN + edx * 2], ax
    inc edx
    cmp edx, COLS * ROWS
    jb .store
    mov edx, TYPE_ROW * COLS            ; past the last row: back to the first typed row
.store:
    mov [pos], edx
    call cursor
    jmp .loop
.enter:
    mov eax, [pos]
    xor edx, edx
    mov ecx, COLS
    div ecx
    inc eax
    cmp eax, ROWS
    jb .row
    mov eax, TYPE_ROW
.row:
    imul eax, COLS
    mov [pos], eax
    call cursor
    jmp .loop
.backspace:
    mov edx, [pos]
    cmp edx, TYPE_ROW * COLS
    jbe .loop
    dec edx
    mov word [SCREEN + edx * 2], 0x1720
    mov [pos], edx
    call cursor
    jmp .loop

.graphics:
    ; Bochs VBE registers (index port 0x1CE, data 0x1CF): off, 320 x 200 x 32, then on with the
    ; linear framebuffer (0x41)
    mov esi, vbe_setup
.vbe:
    lodsw
    cmp ax, 0xFFFF
    je .draw
    mov dx, 0x1CE
    out dx, ax
    lodsw
    mov dx, 0x1CF
    out dx, ax
    jmp .vbe
.draw:
    mov edi, LFB
    xor edx, edx                        ; y
.gy:
    xor ecx, ecx                        ; x
.gx:
    mov eax, ecx
    push edx
    xor edx, edx
    mov ebx, 20
    div ebx                             ; eax: the bar (x / 20)
    pop edx
    mov eax, [cga_rgb + eax * 4]
    stosd
    inc ecx
    cmp ecx, GFX_W
    jb .gx
    inc edx
    cmp edx, GFX_H
    jb .gy
.idle:
    in al, 0x64                         ; keys are read and ignored
    test al, 1
    jz .idle
    in al, 0x60
    jmp .idle

; puts: the zero-terminated string at esi to edi with attribute ah
puts:
    lodsb
    test al, al
    jz .done
    stosw
    jmp puts
.done:
    ret

; hexdigit: al (0..15) -> its hex digit in al
hexdigit:
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe .ok
    add al, 'A' - '9' - 1
.ok:
    ret

; cursor: the hardware cursor (CRTC registers 0x0E, 0x0F) to [pos]
cursor:
    mov ebx, [pos]
    mov dx, 0x3D4
    mov al, 0x0F
    out dx, al
    inc dx
    mov al, bl
    out dx, al
    dec dx
    mov al, 0x0E
    out dx, al
    inc dx
    mov al, bh
    out dx, al
    ret

title:  db "lockstep VGA test: this guest has no serial console", 0
colour: db "colour ", 0
prompt: db "type here:", 0
; VBE register, value pairs, ended by 0xFFFF: enable off, x resolution, y resolution, bits per pixel, enable + LFB
vbe_setup: dw 4, 0, 1, GFX_W, 2, GFX_H, 3, 32, 4, 0x41, 0xFFFF
align 4
; the 16 CGA colours as 0x00RRGGBB
cga_rgb: dd 0x000000, 0x0000AA, 0x00AA00, 0x00AAAA, 0xAA0000, 0xAA00AA, 0xAA5500, 0xAAAAAA
         dd 0x555555, 0x5555FF, 0x55FF55, 0x55FFFF, 0xFF5555, 0xFF55FF, 0xFFFF55, 0xFFFFFF
; scancode set 1 -> ASCII (0: ignored)
keymap:
    db 0, 0, "1234567890", 0, 0, 0, 0          ; 0x00-0x0F
    db "qwertyuiop", 0, 0, 0, 0, "as"          ; 0x10-0x1F
    db "dfghjkl", 0, 0, 0, 0, 0, "zxcv"        ; 0x20-0x2F
    db "bnm", 0, ".", 0, 0, 0, 0, " "          ; 0x30-0x39
keymap_end:

load_end:

section .bss
bss_start:
alignb 4
pos:    resd 1
stack:  resb 4096
stack_top:
bss_end:
